-- codefill's own inline-completion renderer: asks the server (streaming codefill/complete or
-- textDocument/inlineCompletion), draws the suggestion as ghost text with extmarks (virt_text
-- for the rest of the cursor line, virt_lines below), and accepts it in full, by word or by line.
local server = require("codefill.server")

local M = {}

local api = vim.api
M.ns = api.nvim_create_namespace("codefill.ghost")

local uv = vim.uv or vim.loop
local seq = 0
-- Per buffer: { sugg = {row, col, prefix, text, tick, extmark}, req = {client, id, stream},
--               timer = uv timer, dismissed_tick = changedtick after a dismiss }
local bufs = {}
local streams = {} ---@type table<string, table> streamId -> request record
-- Counters for :Codefill status and the tests.
M.stats = { requests = 0, inline_requests = 0, partials = 0, answers = 0, shown = 0, accepts = 0 }

local function cfg()
  return server.config
end

local function bstate(buf)
  local s = bufs[buf]
  if not s then
    s = {}
    bufs[buf] = s
  end
  return s
end

local function in_insert()
  local mode = api.nvim_get_mode().mode
  return mode:sub(1, 1) == "i"
end

local function cursor()
  local pos = api.nvim_win_get_cursor(0)
  return pos[1] - 1, pos[2]
end

local function pum_hidden_now()
  return cfg().ghost.pum == "hide" and vim.fn.pumvisible() == 1
end

--- Remove the ghost text (the suggestion record stays for typing-through unless `forget`).
function M.clear(buf, forget)
  buf = buf or api.nvim_get_current_buf()
  local s = bufs[buf]
  if api.nvim_buf_is_valid(buf) then
    api.nvim_buf_clear_namespace(buf, M.ns, 0, -1)
  end
  if s then
    if s.sugg then
      s.sugg.extmark = nil
    end
    if forget then
      s.sugg = nil
    end
  end
end

local function cancel(buf)
  local s = bufs[buf]
  if s and s.timer then
    s.timer:stop()
  end
  if s and s.req then
    local req = s.req
    s.req = nil
    streams[req.stream] = nil
    if req.client and not req.client:is_stopped() and req.id then
      pcall(req.client.cancel_request, req.client, req.id)
    end
    server.generating = math.max(0, server.generating - 1)
  end
end
M.cancel = cancel

local function display(text)
  -- Tabs in virtual text would show as ^I: expand them as the buffer would.
  local ts = vim.bo.tabstop > 0 and vim.bo.tabstop or 8
  return (text:gsub("\t", string.rep(" ", ts)))
end

--- Draw `text` as ghost text at (row, col) of buf and remember it as the current suggestion.
function M.show(buf, row, col, text)
  local s = bstate(buf)
  local line = api.nvim_buf_get_lines(buf, row, row + 1, false)[1] or ""
  s.sugg = {
    row = row,
    col = col,
    prefix = line:sub(1, col),
    text = text,
    tick = api.nvim_buf_get_changedtick(buf),
  }
  api.nvim_buf_clear_namespace(buf, M.ns, 0, -1)
  if text == "" or pum_hidden_now() then
    return
  end
  local lines = vim.split(text, "\n", { plain = true })
  local hl = cfg().ghost.hl_group
  local opts = { hl_mode = "combine", priority = 65534 }
  if lines[1] ~= "" then
    opts.virt_text = { { display(lines[1]), hl } }
    opts.virt_text_pos = vim.fn.has("nvim-0.10") == 1 and "inline" or "overlay"
  end
  if #lines > 1 then
    local vl = {}
    for i = 2, #lines do
      vl[#vl + 1] = { { display(lines[i]), hl } }
    end
    opts.virt_lines = vl
  end
  s.sugg.extmark = api.nvim_buf_set_extmark(buf, M.ns, row, col, opts)
end

--- The suggestion shown at the cursor of the current window, or nil.
function M.current(buf)
  buf = buf or api.nvim_get_current_buf()
  local s = bufs[buf]
  if not s or not s.sugg or not s.sugg.extmark or s.sugg.text == "" then
    return nil
  end
  local row, col = cursor()
  if s.sugg.row ~= row or s.sugg.col ~= col or s.sugg.tick ~= api.nvim_buf_get_changedtick(buf) then
    return nil
  end
  return s.sugg
end

local function request_done(buf, req)
  local s = bufs[buf]
  if s and s.req == req then
    s.req = nil
    server.generating = math.max(0, server.generating - 1)
  end
  streams[req.stream] = nil
end

--- Is the answer to `req` still about the buffer and cursor the user sees?
local function still_valid(buf, req)
  if not api.nvim_buf_is_valid(buf) or api.nvim_get_current_buf() ~= buf or not in_insert() then
    return false
  end
  local row, col = cursor()
  return req.tick == api.nvim_buf_get_changedtick(buf) and req.row == row and req.col == col
end

local function on_answer(buf, req, text)
  if not still_valid(buf, req) then
    return
  end
  M.stats.answers = M.stats.answers + 1
  if type(text) ~= "string" or text == "" then
    M.clear(buf, true)
    return
  end
  M.stats.shown = M.stats.shown + 1
  M.show(buf, req.row, req.col, text)
end

--- codefill/partial notification handler: the growing text of a streamed suggestion.
function M.on_partial(_, params, _)
  local req = params and streams[params.streamId]
  if not req then
    return
  end
  local text = params.text
  M.stats.partials = M.stats.partials + 1
  if type(text) == "string" and text ~= "" and still_valid(req.buf, req) then
    M.show(req.buf, req.row, req.col, text)
  end
end

--- Ask the server for a suggestion at the cursor now.
---@param invoked boolean? true when the user asked explicitly
---@param retry boolean? a second attempt after a spurious empty answer (not retried again)
function M.request(invoked, retry)
  local buf = api.nvim_get_current_buf()
  if not server.enabled or not in_insert() or pum_hidden_now() then
    return
  end
  local client = server.client(buf)
  if not client then
    return
  end
  local s = bstate(buf)
  if not invoked and not retry and s.dismissed_tick == api.nvim_buf_get_changedtick(buf) then
    return
  end
  cancel(buf)
  local row, col = cursor()
  seq = seq + 1
  local req = {
    buf = buf,
    client = client,
    row = row,
    col = col,
    tick = api.nvim_buf_get_changedtick(buf),
    stream = string.format("nvim-%d-%d", vim.fn.getpid(), seq),
    retry = retry,
  }
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  local ok, id
  if cfg().streaming then
    M.stats.requests = M.stats.requests + 1
    params.streamId = req.stream
    streams[req.stream] = req
    ok, id = client:request("codefill/complete", params, function(err, result)
      request_done(buf, req)
      if err then
        if err.code ~= -32800 then -- RequestCancelled
          server.log("codefill/complete failed: " .. tostring(err.message))
        end
        return
      end
      -- Workaround for the server (0.1.0): a request that adopted an in-flight generation
      -- which then turned out not to match what was typed answers "" with the reason "the
      -- document changed" although it did not. Ask once more: the next answer starts afresh.
      if result and result.text == "" and result.reason == "the document changed"
        and not req.retry and still_valid(buf, req) then
        server.log("empty answer from a diverged in-flight generation; asking again")
        M.request(invoked, true)
        return
      end
      server.after_answer(client.id, result and result.reason)
      on_answer(buf, req, result and result.text)
    end, buf)
  else
    M.stats.inline_requests = M.stats.inline_requests + 1
    params.context = { triggerKind = invoked and 1 or 2 }
    ok, id = client:request("textDocument/inlineCompletion", params, function(err, result)
      request_done(buf, req)
      if err then
        if err.code ~= -32800 then
          server.log("textDocument/inlineCompletion failed: " .. tostring(err.message))
        end
        return
      end
      local items = result and (result.items or result) or {}
      local item = items[1]
      local text = item and item.insertText
      if type(text) == "table" then
        text = text.value
      end
      if not text or text == "" then
        server.after_answer(client.id, nil)
      end
      on_answer(buf, req, text)
    end, buf)
  end
  if ok then
    req.id = id
    s.req = req
    server.generating = server.generating + 1
  else
    streams[req.stream] = nil
  end
end

--- Ask after the configured debounce (coalesces bursts of keystrokes).
function M.schedule_request()
  local buf = api.nvim_get_current_buf()
  local s = bstate(buf)
  if not s.timer then
    s.timer = uv.new_timer()
  end
  s.timer:stop()
  s.timer:start(cfg().trigger.debounce_ms, 0, vim.schedule_wrap(function()
    if api.nvim_buf_is_valid(buf) and api.nvim_get_current_buf() == buf then
      M.request(false)
    end
  end))
end

--- TextChangedI: keep the suggestion when the user typed its first characters, else drop it.
function M.on_text_changed(buf)
  local s = bstate(buf)
  local sugg = s.sugg
  local tick = api.nvim_buf_get_changedtick(buf)
  if sugg and sugg.tick ~= tick then
    local row, col = cursor()
    local line = api.nvim_buf_get_lines(buf, row, row + 1, false)[1] or ""
    local typed = line:sub(sugg.col + 1, col)
    if row == sugg.row and col > sugg.col and line:sub(1, sugg.col) == sugg.prefix
      and #typed < #sugg.text and sugg.text:sub(1, #typed) == typed then
      M.show(buf, row, col, sugg.text:sub(#typed + 1))
    else
      M.clear(buf, true)
    end
  end
  cancel(buf)
  if cfg().trigger.auto then
    M.schedule_request()
  end
end

--- CursorMovedI: a move that is not a text change dismisses the ghost text.
function M.on_cursor_moved(buf)
  local s = bufs[buf]
  if not s or not s.sugg then
    return
  end
  if s.sugg.tick ~= api.nvim_buf_get_changedtick(buf) then
    return -- a text change: TextChangedI (which follows) decides
  end
  local row, col = cursor()
  if row ~= s.sugg.row or col ~= s.sugg.col then
    cancel(buf)
    M.clear(buf, true)
  end
end

local function next_word(text)
  -- Leading whitespace (newlines included), then a run of word characters or of other
  -- non-space characters.
  local ws = text:match("^%s*")
  local rest = text:sub(#ws + 1)
  local word = rest:match("^[%w_]+") or rest:match("^[^%w_%s]+") or ""
  return ws .. word
end

local function next_line(text)
  if text:sub(1, 1) == "\n" then
    local nl = text:find("\n", 2, true)
    return nl and text:sub(1, nl - 1) or text
  end
  local nl = text:find("\n", 1, true)
  return nl and text:sub(1, nl - 1) or text
end

M._next_word, M._next_line = next_word, next_line

--- Accept the suggestion at the cursor: "all", "word" or "line". Returns true if text was inserted.
function M.accept(what)
  local buf = api.nvim_get_current_buf()
  local sugg = M.current(buf)
  if not sugg then
    return false
  end
  local piece = sugg.text
  if what == "word" then
    piece = next_word(sugg.text)
  elseif what == "line" then
    piece = next_line(sugg.text)
  end
  if piece == "" then
    piece = sugg.text
  end
  local rest = sugg.text:sub(#piece + 1)
  cancel(buf)
  M.clear(buf, true)
  local lines = vim.split(piece, "\n", { plain = true })
  api.nvim_buf_set_text(buf, sugg.row, sugg.col, sugg.row, sugg.col, lines)
  local row = sugg.row + #lines - 1
  local col = #lines == 1 and (sugg.col + #piece) or #lines[#lines]
  api.nvim_win_set_cursor(0, { row + 1, col })
  if rest ~= "" then
    M.show(buf, row, col, rest)
  end
  local client = server.client(buf)
  if client then
    local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
    client:notify("codefill/didAccept", { textDocument = params.textDocument, position = params.position })
  end
  M.stats.accepts = M.stats.accepts + 1
  server.log(string.format("accepted %s (%d chars)", what or "all", #piece))
  return true
end

--- Hide the suggestion until the text changes again.
function M.dismiss()
  local buf = api.nvim_get_current_buf()
  cancel(buf)
  M.clear(buf, true)
  bstate(buf).dismissed_tick = api.nvim_buf_get_changedtick(buf)
end

function M.detach(buf)
  cancel(buf)
  M.clear(buf, true)
  local s = bufs[buf]
  if s and s.timer then
    s.timer:stop()
    s.timer:close()
  end
  bufs[buf] = nil
end

function M.clear_all()
  for buf in pairs(bufs) do
    cancel(buf)
    M.clear(buf, true)
  end
end

return M
