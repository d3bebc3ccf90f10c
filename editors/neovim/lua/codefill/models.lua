-- :Codefill model: choose a model of the server's registry (codefill/models), download it with
-- progress in the statusline (codefill/pullModel on a work-done token, cancellable), then set
-- settings.engine.model and tell the servers (workspace/didChangeConfiguration); they reload it.
local server = require("codefill.server")

local M = {}

M.rows = nil ---@type table[]|nil the registry as last listed by the server
M.current = nil ---@type string|nil engine.model as the server last reported it
--- The pull in progress: { name, client_id, id, token, percent, message, cancelled }.
M.pull = nil
--- How the last pull ended: { name, outcome = "pulled" | "cancelled" | "failed", message, path }.
M.last = nil
--- How the last model switch ended: { name, state = "ready" | "failed", template, error }.
M.loaded = nil

local seq = 0
local watch_seq = 0
-- Poll codefill/status this often while the servers load a newly chosen model.
local POLL_MS = 300
-- A cancelled pull whose end the server never reports is given up after this long.
local CANCEL_WAIT_MS = 10000

local null = server.null

local function client()
  local c = server.client(vim.api.nvim_get_current_buf()) or server.client()
  if not c then
    return nil, "no codefill server is running: open a file first"
  end
  return c
end

--- NAME[:QUANT] → name, quant (nil when absent); hub references stay whole.
local function split_name(name)
  if name:sub(1, 5) == "hf://" then
    return name, nil
  end
  local base, quant = name:match("^(.-):([^:]+)$")
  if base then
    return base, quant
  end
  return name, nil
end

local function row_of(name)
  for _, r in ipairs(M.rows or {}) do
    if r.name == name then
      return r
    end
  end
end

--- The quantization of a registry row that NAME[:QUANT] means (its default when none is given).
local function quant_of(row, quant)
  quant = (quant or row.default_quant or ""):upper()
  for _, q in ipairs(row.quantizations or {}) do
    if tostring(q.quant):upper() == quant then
      return q
    end
  end
end

--- The file a name refers to when it is pulled already, else nil.
function M.pulled_path(name)
  local base, quant = split_name(name)
  local row = row_of(base)
  local q = row and quant_of(row, quant)
  return q and q.pulled == true and null(q.path) or nil
end

local function size(bytes)
  bytes = tonumber(null(bytes))
  if not bytes then
    return "?"
  end
  if bytes >= 1e9 then
    return string.format("%.1f GB", bytes / 1e9)
  end
  return string.format("%.0f MB", bytes / 1e6)
end

local function params(n)
  n = tonumber(null(n))
  if not n then
    return "?"
  end
  if n >= 1e9 then
    return (string.format("%.1fB", n / 1e9):gsub("%.0B$", "B"))
  end
  return string.format("%.0fM", n / 1e6)
end

--- One line of the picker for a registry row.
function M.describe(row)
  local q = quant_of(row, nil) or {}
  local pulled = {}
  for _, x in ipairs(row.quantizations or {}) do
    if x.pulled == true then
      pulled[#pulled + 1] = x.quant == row.default_quant and "pulled" or ("pulled " .. x.quant)
    end
  end
  local parts = {
    row.name,
    params(row.parameters),
    tostring(null(row.default_quant) or "?") .. " " .. size(q.size_bytes),
    tostring(null(row.license) or "?") .. (row.gated == true and " (gated)" or ""),
  }
  if #pulled > 0 then
    parts[#parts + 1] = table.concat(pulled, ", ")
  end
  if row.recommended == true then
    parts[#parts + 1] = "recommended"
  end
  if M.current == row.name then
    parts[#parts + 1] = "in use"
  end
  return table.concat(parts, "  ")
end

--- Ask the server for the registry; cb(rows|nil, err).
function M.fetch(cb)
  local c, err = client()
  if not c then
    return cb(nil, err)
  end
  local ok = c:request("codefill/models", vim.empty_dict(), function(e, result)
    if e or type(result) ~= "table" or type(result.models) ~= "table" then
      return cb(nil, e and e.message or "no model list in the answer")
    end
    M.rows, M.current = result.models, null(result.current) or ""
    cb(M.rows)
  end)
  if not ok then
    cb(nil, "the codefill server is not running")
  end
end

--- Names for the command line: "cancel" and the registry's names (listed once if needed).
function M.complete_names()
  if not M.rows then
    local c = client()
    if c then
      local answer = c:request_sync("codefill/models", vim.empty_dict(), 2000)
      if answer and answer.result and type(answer.result.models) == "table" then
        M.rows, M.current = answer.result.models, null(answer.result.current) or ""
      end
    end
  end
  local names = { "cancel" }
  for _, r in ipairs(M.rows or {}) do
    names[#names + 1] = r.name
  end
  return names
end

--- Wait for the servers to load the model just set (they send no progress for a reload: poll
--- codefill/status), then say how it went.
local function watch_load(name, path)
  watch_seq = watch_seq + 1
  local mine = watch_seq
  local label = name == "" and "the embedded default model" or name
  local started = vim.uv.now()
  local saw_loading = false
  server.state.model, server.state.percent, server.state.error = "loading", nil, nil
  vim.cmd("redrawstatus")
  local function poll()
    if mine ~= watch_seq then
      return -- another model was chosen meanwhile
    end
    server.refresh_status(nil, function(result)
      if mine ~= watch_seq then
        return
      end
      local m = result and result.model or {}
      local state = m.state
      local same = path and null(m.model) and vim.fn.resolve(m.model) == vim.fn.resolve(path)
      local elapsed = vim.uv.now() - started
      if state == "loading" then
        saw_loading = true
      end
      -- A "ready" or "failed" that may still be the previous model's counts only once the
      -- server has been seen loading, answers with the new file, or had time to start.
      if (state == "ready" or state == "failed") and (saw_loading or same or elapsed >= 2000) then
        local template, why = null(m.template), null(m.error)
        M.loaded = { name = name, state = state, template = template, error = why }
        if state == "ready" then
          server.notify(string.format("%s ready (template %s)", label, tostring(template or "?")))
        else
          server.notify(string.format("%s failed to load: %s", label, tostring(why or "?")),
            vim.log.levels.ERROR)
        end
        return
      end
      if elapsed > 600000 then
        server.log("stopped waiting for " .. label .. " to load")
        return
      end
      vim.defer_fn(poll, POLL_MS)
    end)
  end
  vim.defer_fn(poll, POLL_MS)
end

--- Set settings.engine.model (the registry name; "" = the embedded default) and tell the
--- servers, which reload the model.
function M.apply(name, path)
  local s = server.config.settings
  s.engine = type(s.engine) == "table" and s.engine or {}
  s.engine.model = name
  M.current = name
  server.push_settings()
  server.log("engine.model = " .. vim.inspect(name))
  watch_load(name, path)
end

local function finish(p, outcome, message, path)
  if M.pull ~= p then
    return
  end
  M.pull = nil
  server.on_token(p.token, nil)
  if p.timer then
    p.timer:stop()
    p.timer:close()
    p.timer = nil
  end
  M.last = { name = p.name, outcome = outcome, message = message, path = path }
  vim.cmd("redrawstatus")
end

local function cancelled(p)
  finish(p, "cancelled", p.ended)
  server.notify(string.format("pull cancelled; :Codefill model %s resumes", p.name))
end

local function on_progress(p, value)
  if M.pull ~= p then
    return
  end
  if value.kind == "begin" and not p.begun then
    p.begun = true
    server.notify(string.format("pulling %s (:Codefill model cancel stops it)", p.name))
  end
  if value.kind == "begin" or value.kind == "report" then
    p.percent = tonumber(value.percentage) or p.percent
    p.message = value.message or p.message
  elseif value.kind == "end" then
    p.ended = value.message
    if p.cancelled and type(value.message) == "string" and value.message:find("^cancel") then
      -- Neovim drops the server's RequestCancelled answer: the pull's end says it stopped.
      cancelled(p)
    end
  end
end

--- Download a model with codefill/pullModel, then switch to it.
function M.start_pull(name)
  local c, err = client()
  if not c then
    return server.notify(err, vim.log.levels.ERROR)
  end
  seq = seq + 1
  local token = string.format("codefill-pull-%d-%d", vim.fn.getpid(), seq)
  local p = { name = name, client_id = c.id, token = token }
  server.on_token(p.token, function(value)
    on_progress(p, value)
  end)
  M.pull = p
  local params = { name = name, workDoneToken = token }
  local ok, id = c:request("codefill/pullModel", params, function(e, result)
    if M.pull ~= p then
      return
    end
    if e then
      if p.cancelled then
        return cancelled(p)
      end
      finish(p, "failed", e.message)
      return server.notify(tostring(e.message), vim.log.levels.ERROR)
    end
    local path = type(result) == "table" and null(result.path) or nil
    finish(p, "pulled", p.ended, path)
    server.notify(string.format("pulled %s to %s", name, tostring(path)))
    M.rows = nil -- its pulled state changed
    M.apply(name, path)
  end)
  if not ok then
    finish(p, "failed", "the codefill server is not running")
    return server.notify("the codefill server is not running", vim.log.levels.ERROR)
  end
  p.id = id
  server.log("pulling " .. name)
  vim.cmd("redrawstatus")
end

--- Stop the pull in progress (the partial download stays; pulling the same name resumes it).
function M.cancel()
  local p = M.pull
  if not p then
    server.notify("no model is being pulled")
    return false
  end
  if p.cancelled then
    return true
  end
  p.cancelled = true
  local c = vim.lsp.get_client_by_id(p.client_id)
  if not c or c:is_stopped() then
    cancelled(p) -- its server is gone
    return true
  end
  if p.id then
    c:cancel_request(p.id)
  end
  -- The server ends the pull's progress with "cancelled"; a server that never does is given up.
  p.timer = vim.uv.new_timer()
  p.timer:start(CANCEL_WAIT_MS, 0, vim.schedule_wrap(function()
    if M.pull == p then
      cancelled(p)
    end
  end))
  vim.cmd("redrawstatus")
  return true
end

--- Use NAME (a registry name, NAME:QUANT or hf://OWNER/REPO/FILE.gguf; "" = the embedded
--- default): pulled first when it is not on disk yet.
function M.choose(name)
  if M.pull then
    local c = vim.lsp.get_client_by_id(M.pull.client_id)
    if c and not c:is_stopped() then
      return server.notify(string.format("already pulling %s (:Codefill model cancel stops it)",
        M.pull.name), vim.log.levels.WARN)
    end
    finish(M.pull, "failed", "the server stopped")
  end
  if name == "" then
    return M.apply("", nil)
  end
  M.fetch(function(_, err)
    if err then
      return server.notify("no model list from the server: " .. err, vim.log.levels.ERROR)
    end
    local path = M.pulled_path(name)
    if path then
      return M.apply(name, path)
    end
    M.start_pull(name)
  end)
end

--- vim.ui.select over the registry (recommended first) and the embedded default.
function M.pick()
  M.fetch(function(rows, err)
    if not rows then
      return server.notify("no model list from the server: " .. err, vim.log.levels.ERROR)
    end
    local items = {}
    for _, r in ipairs(rows) do
      if r.recommended == true then
        table.insert(items, 1, { name = r.name, row = r, text = M.describe(r) })
      else
        items[#items + 1] = { name = r.name, row = r, text = M.describe(r) }
      end
    end
    items[#items + 1] = { name = "", text = "embedded default (built in, no download)"
      .. (M.current == "" and "  in use" or "") }
    vim.ui.select(items, {
      prompt = "codefill model",
      kind = "codefill.model",
      format_item = function(item)
        return item.text
      end,
    }, function(item)
      if item then
        M.choose(item.name)
      end
    end)
  end)
end

--- The statusline text while a pull runs: "codefill: pulling NAME 42%", else nil.
function M.statusline()
  local p = M.pull
  local c = p and vim.lsp.get_client_by_id(p.client_id)
  if not c or c:is_stopped() then
    return nil -- no pull, or its server is gone (it never answers now)
  end
  if p.cancelled then
    return "codefill: cancelling pull of " .. p.name
  end
  return "codefill: pulling " .. p.name .. (p.percent and string.format(" %d%%", p.percent) or "")
end

--- :Codefill model [NAME | cancel]
function M.command(args)
  if #args > 1 then
    return server.notify("usage: :Codefill model [NAME | cancel]", vim.log.levels.ERROR)
  end
  if args[1] == nil then
    return M.pick()
  end
  if args[1] == "cancel" then
    return M.cancel()
  end
  M.choose(args[1])
end

return M
