-- wrk script: the Anyscale seed's chat request, with the Portkey headers when WRK_GATEWAY=1.
wrk.method = "POST"
wrk.body = '{"messages":[{"role":"user","content":"What happens when you mix red & yellow?"}],"model":"gpt-4o-mini"}'
if os.getenv("WRK_STREAM") == "1" then
  wrk.body = '{"messages":[{"role":"user","content":"What happens when you mix red & yellow?"}],"model":"gpt-4o-mini","stream":true}'
end
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"
if os.getenv("WRK_GATEWAY") == "1" then
  wrk.headers["x-portkey-provider"] = os.getenv("WRK_PROVIDER") or "openai"
end
if os.getenv("WRK_CONFIG") then
  wrk.headers["x-portkey-config"] = os.getenv("WRK_CONFIG")
end
