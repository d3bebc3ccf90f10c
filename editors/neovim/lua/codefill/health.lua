-- :checkhealth codefill
local M = {}

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
      if m.state == "ready" then
        health.ok(desc)
      elseif m.state == "failed" then
        health.error(desc .. ": " .. tostring(m.error), { "check engine.model in settings", ":Codefill log" })
      else
        health.info(desc)
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
