-- Where the user is looking: codefill/didFocus tells the server the cursor of the buffer that
-- became current (BufEnter, WinEnter, LspAttach) and of the cursor that came to rest on another
-- line (CursorMoved/CursorMovedI, debounced), so that it evaluates the prompt a suggestion there
-- needs in the background and the first suggestion after typing starts is fast.
--
-- The server skips a focus on the line it saw last; the client only avoids flooding it: a buffer
-- that becomes current is sent unless it is the buffer and line sent last, a cursor at rest only
-- when its line differs from the line last sent for that buffer.
local server = require("codefill.server")

local M = {}

local api = vim.api
local uv = vim.uv or vim.loop

--- Quiet time after the last cursor move before its line counts as looked at (ms).
M.rest_ms = 300

local lines = {} ---@type table<integer, integer> buffer -> the line last sent for it
local last = nil ---@type { buf: integer, line: integer }|nil the position sent last
local client_id = nil ---@type integer|nil the client the positions were sent to
local timer = nil
-- Counters for the tests.
M.stats = { sent = 0 }

--- Whether completions are on for the buffer in the settings sent to the server (the toggle,
--- completion.enabled, completion.languages by languageId with "*" the default, as the server
--- reads them).
local function completions_on(buf)
  local completion = server.settings().completion
  if completion.enabled == false then
    return false
  end
  local languages = completion.languages
  if type(languages) ~= "table" then
    return true
  end
  local v = languages[vim.bo[buf].filetype]
  if v == nil then
    v = languages["*"]
  end
  return v ~= false
end

--- Send codefill/didFocus for the current window's cursor when the server should hear of it.
---@param why "active"|"rest"
function M.send(why)
  if not server.config then
    return false
  end
  local buf = api.nvim_get_current_buf()
  if not api.nvim_buf_is_valid(buf) or not vim.b[buf].codefill_root or not completions_on(buf) then
    return false
  end
  -- Only an initialized client that the buffer is attached to: its didOpen went out already.
  local client = server.client(buf)
  if not client or client:is_stopped() then
    return false
  end
  if client.id ~= client_id then
    -- A new server (a restart) knows nothing yet.
    lines, last, client_id = {}, nil, client.id
  end
  local line = api.nvim_win_get_cursor(0)[1] - 1
  local same
  if why == "active" then
    same = last ~= nil and last.buf == buf and last.line == line
  else
    same = lines[buf] == line
  end
  if same then
    return false
  end
  lines[buf], last = line, { buf = buf, line = line }
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  -- Client:notify sends the buffer's pending didChange first.
  client:notify("codefill/didFocus", { textDocument = params.textDocument, position = params.position })
  M.stats.sent = M.stats.sent + 1
  return true
end

--- The cursor moved: send its line once it has rested for rest_ms.
function M.moved()
  if not timer then
    timer = uv.new_timer()
  end
  timer:stop()
  timer:start(M.rest_ms, 0, vim.schedule_wrap(function()
    M.send("rest")
  end))
end

--- A buffer became the current one (or its client got ready): send at once, after the events
--- of this change (the didOpen of a buffer just attached) are through.
function M.entered()
  vim.schedule(function()
    M.send("active")
  end)
end

--- The buffer is gone.
function M.forget(buf)
  lines[buf] = nil
  if last and last.buf == buf then
    last = nil
  end
end

function M.autocmds(group)
  api.nvim_create_autocmd({ "BufEnter", "WinEnter" }, {
    group = group,
    callback = function(ev)
      if vim.b[ev.buf].codefill_root then
        M.entered()
      end
    end,
  })
  api.nvim_create_autocmd("LspAttach", {
    group = group,
    callback = function(ev)
      local client = vim.lsp.get_client_by_id(ev.data and ev.data.client_id or -1)
      if client and client.name == "codefill" and ev.buf == api.nvim_get_current_buf() then
        M.entered()
      end
    end,
  })
  api.nvim_create_autocmd({ "CursorMoved", "CursorMovedI" }, {
    group = group,
    callback = function(ev)
      if vim.b[ev.buf].codefill_root then
        M.moved()
      end
    end,
  })
  api.nvim_create_autocmd({ "BufUnload", "BufDelete" }, {
    group = group,
    callback = function(ev)
      M.forget(ev.buf)
    end,
  })
end

return M
