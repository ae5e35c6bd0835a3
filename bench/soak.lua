-- wrk script for the soak run: a mix of what a sidecar sees, rotating per request: a plain
-- chat request, one through a fallback config, one through a retry config, a request naming an
-- unknown provider (400) and one with a body that is not JSON (400).
local bodies = {
  '{"messages":[{"role":"user","content":"What happens when you mix red & yellow?"}],"model":"gpt-4o-mini"}',
}
local kinds = {
  {["x-portkey-provider"] = "openai"},
  {["x-portkey-config"] = '{"strategy":{"mode":"fallback"},"targets":[{"provider":"openai","api_key":"sk-soak"},{"provider":"openai","api_key":"sk-soak-2"}]}'},
  {["x-portkey-config"] = '{"provider":"openai","api_key":"sk-soak","retry":{"attempts":2}}'},
  {["x-portkey-provider"] = "no-such-provider"},
  {["x-portkey-provider"] = "openai", body = "{not json"},
}
local n = 0
request = function()
  n = n + 1
  local k = kinds[(n % #kinds) + 1]
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer sk-soak"}
  for name, value in pairs(k) do
    if name ~= "body" then headers[name] = value end
  end
  return wrk.format("POST", "/v1/chat/completions", headers, k.body or bodies[1])
end
