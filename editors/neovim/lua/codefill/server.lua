-- Starting, stopping and restarting `codefill serve` (one LSP client per project root), the
-- model status shown by the statusline and :Codefill status, and the log kept for :Codefill log.
local M = {}

local NAME = "codefill"

M.config = nil ---@type table
M.enabled = true
-- Model state as last seen: "off" | "starting" | "loading" | "ready" | "failed" | "error".
-- With a remote engine (settings.remote.url) also: backend ("llama-server" | "openai"), url and
-- remote = { health = "unknown" | "ok" | "failing", last_error, errors, retries, fallbacks }.
M.state = { model = "off", percent = nil, message = nil, error = nil }
M.generating = 0
local log_lines = {}
local restarts = {} ---@type table<string, integer> root -> automatic restarts so far
local stopping = {} ---@type table<integer, boolean> client ids stopped on purpose
local handlers_extra = {} ---@type table<string, function>
local token_handlers = {} ---@type table<string|integer, function> $/progress of our own requests

function M.log(msg)
  local limit = M.config and M.config.log_lines or 1000
  for line in tostring(msg):gmatch("[^\n]+") do
    log_lines[#log_lines + 1] = os.date("%H:%M:%S ") .. line
  end
  while #log_lines > limit do
    table.remove(log_lines, 1)
  end
end

function M.log_lines()
  return log_lines
end

local function notify(msg, level)
  M.log(msg)
  vim.notify("codefill: " .. msg, level or vim.log.levels.INFO)
end
M.notify = notify

--- The server command: configured, or `codefill` in the active virtualenv, or on PATH.
---@return string[]|nil cmd, string|nil err
function M.resolve_cmd()
  local cmd = M.config.server.cmd
  if type(cmd) == "string" then
    cmd = { vim.fn.expand(cmd), "serve" }
  elseif type(cmd) == "table" then
    cmd = vim.deepcopy(cmd)
    cmd[1] = vim.fn.expand(cmd[1])
  else
    local found
    local venv = vim.env.VIRTUAL_ENV
    if venv and venv ~= "" and vim.fn.executable(venv .. "/bin/codefill") == 1 then
      found = venv .. "/bin/codefill"
    elseif vim.fn.exepath("codefill") ~= "" then
      found = vim.fn.exepath("codefill")
    end
    if not found then
      return nil, "the `codefill` command was not found in $VIRTUAL_ENV/bin or on $PATH: "
        .. "install codefill (pip install codefill) or set server.cmd in setup()"
    end
    cmd = { found, "serve" }
  end
  if vim.fn.executable(cmd[1]) ~= 1 then
    return nil, string.format("server command %s is not executable: fix server.cmd in setup()",
      vim.inspect(cmd[1]))
  end
  return cmd, nil
end

--- The settings tree sent to the server (the user's table plus the toggle state).
function M.settings()
  local s = vim.deepcopy(M.config.settings)
  s.completion = type(s.completion) == "table" and s.completion or {}
  s.completion.enabled = M.enabled and (s.completion.enabled ~= false)
  return s
end

function M.clients(bufnr)
  local filter = { name = NAME }
  if bufnr then
    filter.bufnr = bufnr
  end
  return vim.lsp.get_clients(filter)
end

function M.client(bufnr)
  return M.clients(bufnr)[1]
end

--- The project root of a buffer.
function M.root(bufnr)
  local name = vim.api.nvim_buf_get_name(bufnr)
  local root = vim.fs.root(bufnr, M.config.server.root_markers)
  if root then
    return root
  end
  local cwd = vim.fn.getcwd()
  if name:sub(1, #cwd + 1) == cwd .. "/" then
    return cwd
  end
  return vim.fs.dirname(name)
end

function M.set_handler(method, fn)
  handlers_extra[method] = fn
end

--- Route the $/progress of a request's workDoneToken (a model pull) to fn(value) instead of the
--- model-loading state; nil removes it.
function M.on_token(token, fn)
  token_handlers[token] = fn
end

local function on_progress(_, params, ctx)
  local value = params and params.value or {}
  local own = params and token_handlers[params.token]
  if own then
    own(value)
    M.log(string.format("pull %s %s %s", value.kind or "?", value.message or value.title or "",
      value.percentage and (value.percentage .. "%") or ""))
    vim.cmd("redrawstatus")
    return vim.lsp.handlers["$/progress"](_, params, ctx)
  end
  if value.kind == "begin" then
    M.state.model, M.state.percent, M.state.message = "loading", value.percentage, value.title
  elseif value.kind == "report" then
    M.state.model, M.state.percent = "loading", value.percentage or M.state.percent
    M.state.message = value.message or M.state.message
  elseif value.kind == "end" then
    M.state.percent, M.state.message = nil, value.message
    -- The end of the load may be a success or a failure: ask the server.
    M.refresh_status(ctx.client_id)
  end
  M.log(string.format("progress %s %s %s", value.kind or "?", value.message or value.title or "",
    value.percentage and (value.percentage .. "%") or ""))
  vim.cmd("redrawstatus")
  return vim.lsp.handlers["$/progress"](_, params, ctx)
end

local function on_log_message(err, params, ctx)
  M.log(params.message)
  return vim.lsp.handlers["window/logMessage"](err, params, ctx)
end

local function on_show_message(err, params, ctx)
  M.log("message: " .. params.message)
  -- The server says when a remote engine starts failing and when it answers again: update the
  -- statusline at once.
  if type(params.message) == "string" and params.message:find("remote engine", 1, true) then
    M.refresh_status(ctx.client_id)
  end
  return vim.lsp.handlers["window/showMessage"](err, params, ctx)
end

--- A reply's value, or nil for JSON null and "".
local function null(v)
  if v == vim.NIL or v == "" then
    return nil
  end
  return v
end
M.null = null

--- Ask the server for codefill/status and update M.state; cb(status|nil, err).
function M.refresh_status(client_id, cb)
  local client = client_id and vim.lsp.get_client_by_id(client_id) or M.client()
  if not client then
    if cb then
      cb(nil, "no codefill server is running")
    end
    return
  end
  client:request("codefill/status", vim.empty_dict(), function(err, result)
    if err or type(result) ~= "table" then
      if cb then
        cb(nil, err and err.message or "no answer")
      end
      return
    end
    local model = result.model or {}
    M.state.model = model.state or M.state.model
    M.state.error = null(model.error)
    if M.state.model == "failed" and M.state.error then
      M.log("model failed: " .. M.state.error)
    end
    local was = M.state.remote and M.state.remote.health
    M.state.backend = null(model.backend)
    M.state.url = null(model.url)
    if M.state.backend and M.state.backend ~= "local" then
      local r = type(model.remote) == "table" and model.remote or {}
      M.state.remote = {
        health = null(r.health) or "unknown",
        last_error = null(r.last_error),
        errors = null(r.errors),
        retries = null(r.retries),
        fallbacks = null(r.fallbacks),
        fallback = model.fallback ~= nil and model.fallback ~= vim.NIL,
      }
    else
      M.state.remote = nil
    end
    local now = M.state.remote and M.state.remote.health
    if now ~= was and (now == "failing" or was == "failing") then
      M.log(now == "failing" and ("remote engine failing: " .. tostring(M.state.remote.last_error))
        or "remote engine answering again")
    end
    vim.cmd("redrawstatus")
    if cb then
      cb(result, nil)
    end
  end)
end

local last_refresh = 0

--- After an answer to a suggestion request: refresh the status in the background when it may
--- have changed. An "engine error" answer at once (at most once a second); with a remote engine
--- any answer, every 5 s at most (every second unless it is known to answer), which also
--- notices a failing remote behind settings.remote.fallback. Never delays the suggestion.
---@param reason string|nil the answer's reason (codefill/complete), nil for inlineCompletion
---@return boolean refreshed
function M.after_answer(client_id, reason)
  local now = vim.uv.now()
  local since = now - last_refresh
  local want
  if type(reason) == "string" and reason:sub(1, 12) == "engine error" then
    want = since >= 1000
  elseif M.state.remote then
    want = since >= (M.state.remote.health == "ok" and 5000 or 1000)
  else
    want = false
  end
  if want then
    last_refresh = now
    M.refresh_status(client_id)
  end
  return want
end

local function on_exit(code, signal, client_id, root)
  vim.schedule(function()
    if stopping[client_id] then
      stopping[client_id] = nil
      M.log(string.format("server for %s stopped", root))
      if #M.clients() == 0 then
        M.state.model = "off"
      end
      return
    end
    local n = (restarts[root] or 0) + 1
    local why = string.format("server for %s exited (code %s, signal %s)", root, code, signal)
    if n > M.config.server.max_restarts then
      M.state.model, M.state.error = "error", why .. "; not restarted again (:Codefill restart)"
      notify(M.state.error, vim.log.levels.ERROR)
      return
    end
    restarts[root] = n
    notify(string.format("%s; restarting (%d/%d)", why, n, M.config.server.max_restarts),
      vim.log.levels.WARN)
    for _, buf in ipairs(vim.api.nvim_list_bufs()) do
      if vim.api.nvim_buf_is_loaded(buf) and vim.b[buf].codefill_root == root then
        M.attach(buf)
      end
    end
  end)
end

--- Start (or reuse) the server for the buffer's root and attach the buffer to it.
---@return integer|nil client_id
function M.attach(bufnr)
  local cmd, err = M.resolve_cmd()
  if not cmd then
    M.state.model, M.state.error = "error", err
    if not M._reported_cmd_error then
      M._reported_cmd_error = true
      notify(err, vim.log.levels.ERROR)
    end
    return nil
  end
  local root = M.root(bufnr)
  vim.b[bufnr].codefill_root = root
  local settings = M.settings()
  local handlers = {
    ["$/progress"] = on_progress,
    ["window/logMessage"] = on_log_message,
    ["window/showMessage"] = on_show_message,
  }
  for method, fn in pairs(handlers_extra) do
    handlers[method] = fn
  end
  local env = vim.tbl_isempty(M.config.server.env) and nil or M.config.server.env
  if M.state.model == "off" or M.state.model == "error" then
    M.state.model = "starting"
  end
  local ok, id = pcall(vim.lsp.start, {
    name = NAME,
    cmd = cmd,
    cmd_env = env,
    root_dir = root,
    init_options = settings,
    settings = { codefill = settings },
    handlers = handlers,
    -- didChange at once: the server debounces itself, and codefill/didAccept must follow the
    -- accepted edit's didChange.
    flags = { debounce_text_changes = 0 },
    on_exit = function(code, signal, client_id)
      on_exit(code, signal, client_id, root)
    end,
  }, {
    bufnr = bufnr,
    silent = true,
    -- Never reuse a client that is shutting down (after :Codefill restart or a crash).
    reuse_client = function(client, config)
      return client.name == config.name and client.root_dir == config.root_dir
        and not stopping[client.id] and not client:is_stopped()
    end,
  })
  if not ok or not id then
    M.state.model = "error"
    M.state.error = string.format("could not start %s: %s", table.concat(cmd, " "),
      ok and "vim.lsp.start failed (see :LspLog)" or tostring(id))
    notify(M.state.error, vim.log.levels.ERROR)
    return nil
  end
  return id
end

--- Send the current settings to every running server.
function M.push_settings()
  local settings = M.settings()
  for _, client in ipairs(M.clients()) do
    client.settings = { codefill = settings }
    client:notify("workspace/didChangeConfiguration", { settings = { codefill = settings } })
  end
end

--- Stop every codefill server (on purpose: no automatic restart).
function M.stop_all()
  for _, client in ipairs(M.clients()) do
    stopping[client.id] = true
    client:stop()
  end
end

--- Stop the servers and start them again for every attached buffer; resets the restart count.
function M.restart()
  local bufs = {}
  for _, buf in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(buf) and vim.b[buf].codefill_root then
      bufs[#bufs + 1] = buf
    end
  end
  local old = M.clients()
  M.stop_all()
  restarts = {}
  M._reported_cmd_error = false
  M.state = { model = "off" }
  local function all_stopped()
    for _, c in ipairs(old) do
      if not c:is_stopped() then
        return false
      end
    end
    return true
  end
  -- A clean shutdown first; a server that takes longer than 5 s is killed.
  if not vim.wait(5000, all_stopped, 20) then
    for _, c in ipairs(old) do
      if not c:is_stopped() then
        c:stop(true)
      end
    end
    vim.wait(5000, all_stopped, 20)
  end
  for _, buf in ipairs(bufs) do
    M.attach(buf)
  end
  M.log("restarted")
end

return M
