-- :checkhealth codefill
local M = {}

local function val(x)
  if x == nil or x == vim.NIL or x == "" then
    return nil
  end
  return x
end

--- The remote engine of a codefill/status `model` table: backend, URL and health.
function M.report_remote(health, m)
  local r = type(m.remote) == "table" and m.remote or {}
  local h = val(r.health) or "unknown"
  local desc = string.format("backend: remote engine %s at %s, health %s (errors %s, retries %s, fallbacks %s)",
    tostring(m.backend), tostring(val(m.url) or "?"), h, tostring(val(r.errors) or 0),
    tostring(val(r.retries) or 0), tostring(val(r.fallbacks) or 0))
  if h == "ok" then
    health.ok(desc)
  elseif h == "failing" then
    local advice = {
      "check that the server answers" .. (m.backend == "llama-server"
        and (": curl " .. tostring(val(m.url) or "<remote.url>") .. "/health") or ""),
      "check remote.url, remote.api and the API key variable (remote.api_key_env); docs/deployment.md",
    }
    if not val(m.fallback) then
      advice[#advice + 1] = "settings.remote.fallback = true completes with the local model while it fails"
    end
    health.warn(desc .. ": " .. tostring(val(r.last_error) or "unknown error"), advice)
  else
    health.info(desc .. " (no request has reached it yet)")
  end
end

function M.check()
  local health = vim.health
  local server = require("codefill.server")
  local codefill = require("codefill")

  health.start("codefill: Neovim")
  local v = vim.version()
  local vs = string.format("%d.%d.%d", v.major, v.minor, v.patch)
  if vim.fn.has("nvim-0.11") == 1 then
    health.ok("Neovim " .. vs)
  else
    health.error("Neovim " .. vs .. ": codefill needs 0.11 or newer")
  end
  if server.config == nil then
    health.error("setup() was not called", { 'add require("codefill").setup({}) to your config' })
    return
  end
  if codefill.uses_native() then
    health.ok("renderer: Neovim's built-in inline completion (vim.lsp.inline_completion)")
    local ok, on = pcall(vim.lsp.inline_completion.is_enabled, { bufnr = 0 })
    if ok then
      health.info("built-in inline completion enabled for the current buffer: " .. tostring(on))
    end
  else
    health.ok("renderer: codefill ghost text (extmarks)" .. (server.config.streaming and ", streaming" or ""))
  end
  if #codefill.problems == 0 then
    health.ok("setup() options are valid")
  else
    for _, p in ipairs(codefill.problems) do
      health.warn("setup(): " .. p)
    end
  end

  health.start("codefill: server")
  local cmd, err = server.resolve_cmd()
  if not cmd then
    health.error(err)
    return
  end
  health.ok("server command: " .. table.concat(cmd, " "))
  local out = vim.fn.system({ cmd[1], "--version" })
  if vim.v.shell_error == 0 then
    health.ok("`" .. cmd[1] .. " --version`: " .. vim.trim(out))
  else
    health.warn("`" .. cmd[1] .. " --version` failed: " .. vim.trim(out))
  end
  local clients = server.clients()
  if #clients == 0 then
    health.info("no codefill server is running (it starts when a file of an enabled filetype opens)")
  end
  for _, client in ipairs(clients) do
    local result
    local done = false
    client:request("codefill/status", vim.empty_dict(), function(e, r)
      result, done = (not e) and r or nil, true
    end)
    vim.wait(5000, function()
      return done
    end, 20)
    local root = client.root_dir or "?"
    if not result then
      health.error(string.format("server %d (%s) did not answer codefill/status", client.id, root))
    else
      local m = result.model or {}
      local desc = string.format("server %d (%s): codefill %s, model %s: %s, template %s", client.id, root,
        tostring(result.version), tostring(m.state), tostring(m.model), tostring(m.template))
      local remote = m.backend ~= nil and m.backend ~= vim.NIL and m.backend ~= "local"
      if m.state == "ready" then
        health.ok(desc)
      elseif m.state == "failed" then
        health.error(desc .. ": " .. tostring(m.error), remote
          and { "check remote.url and remote.api in settings (docs/deployment.md)", ":Codefill log" }
          or { "check engine.model in settings", ":Codefill log" })
      else
        health.info(desc)
      end
      if remote then
        M.report_remote(health, m)
      elseif m.backend == "local" then
        health.ok("backend: local llama.cpp engine")
      end
    end
  end
  if server.state.model == "error" and server.state.error then
    health.error(server.state.error)
  end
  if not server.enabled then
    health.warn("suggestions are turned off (:Codefill toggle)")
  end
end

return M
