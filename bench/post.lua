-- wrk script: the Anyscale seed's chat request, with the Portkey headers when WRK_GATEWAY=1.
-- WRK_STREAM=1 asks for a stream; WRK_MODEL names the model (the bench mock answers a stream
-- for a model containing `bench-200` with 200 content events instead of 8).
local model = os.getenv("WRK_MODEL") or "gpt-4o-mini"
local stream = ""
if os.getenv("WRK_STREAM") == "1" then
  stream = ',"stream":true'
end
wrk.method = "POST"
wrk.body = '{"messages":[{"role":"user","content":"What happens when you mix red & yellow?"}],"model":"'
  .. model .. '"' .. stream .. '}'
-- WRK_BODY replaces the chat body (the Responses or Messages API's own request).
if os.getenv("WRK_BODY") and os.getenv("WRK_BODY") ~= "" then
  wrk.body = os.getenv("WRK_BODY")
end
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"
if os.getenv("WRK_GATEWAY") == "1" then
  wrk.headers["x-portkey-provider"] = os.getenv("WRK_PROVIDER") or "openai"
end
if os.getenv("WRK_VIRTUAL_KEY") then
  wrk.headers["x-portkey-virtual-key"] = os.getenv("WRK_VIRTUAL_KEY")
end
if os.getenv("WRK_CONFIG") then
  wrk.headers["x-portkey-config"] = os.getenv("WRK_CONFIG")
end
-- WRK_DELAY_MS paces each connection: it waits that long after each answer before sending the
-- next request, so that two builds compared are offered about the same request rate below
-- what either can serve (a closed loop at full speed compares them at different rates).
if os.getenv("WRK_DELAY_MS") and os.getenv("WRK_DELAY_MS") ~= "" then
  local pause = tonumber(os.getenv("WRK_DELAY_MS"))
  function delay()
    return pause
  end
end
