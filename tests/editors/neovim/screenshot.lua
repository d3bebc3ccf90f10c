-- A screenshot of a child Neovim as an SVG file, taken the way a UI sees the screen: connect to
-- the child's RPC server (vim.uv pipe, msgpack with vim.mpack), attach as a UI
-- (nvim_ui_attach, ext_linegrid, RGB), apply the redraw events (grid_resize, grid_line,
-- grid_clear, grid_scroll, grid_cursor_goto, hl_attr_define, default_colors_set) to a grid
-- until the screen is flushed and quiet, detach, and draw the grid's cells and colours.
-- Used by spec_e2e.lua for the ghost-text picture in the docs.
local M = {}

local mpack = vim.mpack
local uv = vim.uv

local DEFAULT_FG, DEFAULT_BG = 0xe0e2ea, 0x14161b -- Neovim's default colour scheme (dark)

local function hex(rgb)
  return string.format("#%06x", rgb)
end

local function xml(s)
  return (s:gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;"))
end

--- The screen of the child listening at `address` (vim.fn.serverstart() in the child).
---@return table screen { width, height, cells[row][col] = { text, hl }, attrs, fg, bg, cursor, mode }
function M.grab(address, width, height, timeout_ms)
  local pipe = assert(uv.new_pipe(false))
  local connected, conn_err = false, nil
  pipe:connect(address, function(err)
    conn_err, connected = err, true
  end)
  assert(vim.wait(5000, function()
    return connected
  end, 10), "could not connect to " .. address)
  assert(not conn_err, conn_err)

  local screen = { width = width, height = height, cells = {}, attrs = { [0] = {} },
                   fg = DEFAULT_FG, bg = DEFAULT_BG, cursor = { 0, 0 }, mode = "" }
  local function clear()
    for r = 0, screen.height - 1 do
      local row = {}
      for c = 0, screen.width - 1 do
        row[c] = { " ", 0 }
      end
      screen.cells[r] = row
    end
  end
  clear()
  local modes = {}
  local flushed, last_event = 0, uv.now()

  local handlers = {
    grid_resize = function(_, w, h)
      screen.width, screen.height = w, h
      clear()
    end,
    default_colors_set = function(fg, bg)
      screen.fg = (fg and fg >= 0) and fg or DEFAULT_FG
      screen.bg = (bg and bg >= 0) and bg or DEFAULT_BG
    end,
    hl_attr_define = function(id, rgb)
      screen.attrs[id] = rgb or {}
    end,
    grid_clear = function()
      clear()
    end,
    grid_cursor_goto = function(_, row, col)
      screen.cursor = { row, col }
    end,
    mode_info_set = function(_, infos)
      modes = infos or {}
    end,
    mode_change = function(_, idx)
      local info = modes[idx + 1]
      screen.mode = info and info.name or ""
    end,
    grid_line = function(_, row, col, cells)
      local hl = 0
      local line = screen.cells[row]
      if not line then
        return
      end
      for _, cell in ipairs(cells) do
        local text = cell[1]
        if cell[2] ~= nil then
          hl = cell[2]
        end
        for _ = 1, cell[3] or 1 do
          if col < screen.width then
            line[col] = { text, hl }
          end
          col = col + 1
        end
      end
    end,
    grid_scroll = function(_, top, bot, left, right, rows)
      local function copy(from, to)
        for c = left, right - 1 do
          screen.cells[to][c] = screen.cells[from][c]
        end
      end
      if rows > 0 then
        for r = top, bot - rows - 1 do
          copy(r + rows, r)
        end
      else
        for r = bot - 1, top - rows, -1 do
          copy(r + rows, r)
        end
      end
    end,
    flush = function()
      flushed = flushed + 1
    end,
  }

  local unpacker = mpack.Unpacker()
  local responses = {}
  local function on_message(msg)
    if msg[1] == 1 then
      responses[msg[2]] = { err = msg[3], result = msg[4] }
    elseif msg[1] == 2 and msg[2] == "redraw" then
      last_event = uv.now()
      for _, event in ipairs(msg[3]) do
        local fn = handlers[event[1]]
        if fn then
          for i = 2, #event do
            fn(unpack(event[i]))
          end
        end
      end
    end
  end
  pipe:read_start(function(err, chunk)
    if err or not chunk then
      return
    end
    local pos = 1
    while pos <= #chunk do
      local obj
      obj, pos = unpacker(chunk, pos)
      if obj == nil then
        break
      end
      on_message(obj)
    end
  end)
  local id = 0
  local function request(method, params)
    id = id + 1
    local my = id
    pipe:write(mpack.encode({ 0, my, method, params }))
    assert(vim.wait(10000, function()
      return responses[my] ~= nil
    end, 10), method .. " got no answer")
    local r = responses[my]
    assert(r.err == nil or r.err == mpack.NIL, method .. ": " .. vim.inspect(r.err))
    return r.result
  end

  request("nvim_ui_attach", { width, height, { rgb = true, ext_linegrid = true } })
  -- Wait for a full screen and then for quiet (no redraw for 400 ms).
  vim.wait(timeout_ms or 10000, function()
    return flushed > 0 and uv.now() - last_event > 400
  end, 20)
  pcall(request, "nvim_ui_detach", {})
  pipe:read_stop()
  pipe:close()
  assert(flushed > 0, "no screen was drawn")
  return screen
end

--- The screen as an SVG document.
function M.svg(screen, opts)
  opts = opts or {}
  local cw, ch, size = 8.4, 18, 14
  local pad = 10
  local w, h = screen.width * cw + 2 * pad, screen.height * ch + 2 * pad
  local out = {
    string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">',
      math.ceil(w), math.ceil(h), math.ceil(w), math.ceil(h)),
    opts.title and ("<title>" .. xml(opts.title) .. "</title>") or "",
    string.format('<rect width="100%%" height="100%%" rx="6" fill="%s"/>', hex(screen.bg)),
    string.format('<g font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="%d">', size),
  }
  local function colors(hl)
    local a = screen.attrs[hl] or {}
    local fg = a.foreground or screen.fg
    local bg = a.background or screen.bg
    if a.reverse then
      fg, bg = bg, fg
    end
    return fg, bg, a
  end
  for r = 0, screen.height - 1 do
    local row = screen.cells[r]
    local y = pad + r * ch
    local c = 0
    while c < screen.width do
      local hl = row[c][2]
      local start = c
      local text = {}
      while c < screen.width and row[c][2] == hl do
        text[#text + 1] = row[c][1]
        c = c + 1
      end
      local fg, bg, a = colors(hl)
      local x = pad + start * cw
      if bg ~= screen.bg then
        out[#out + 1] = string.format('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>',
          x, y, (c - start) * cw, ch, hex(bg))
      end
      local s = table.concat(text)
      if s:find("%S") then
        out[#out + 1] = string.format(
          '<text x="%.1f" y="%.1f" fill="%s"%s%s xml:space="preserve" textLength="%.1f" lengthAdjust="spacingAndGlyphs">%s</text>',
          x, y + ch - 5, hex(fg), a.bold and ' font-weight="bold"' or "", a.italic and ' font-style="italic"' or "",
          (c - start) * cw, xml(s))
      end
    end
  end
  local cr, cc = screen.cursor[1], screen.cursor[2]
  local bar = screen.mode:find("insert") ~= nil
  out[#out + 1] = string.format('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" opacity="0.85"/>',
    pad + cc * cw, pad + cr * ch, bar and 2 or cw, ch, hex(screen.fg))
  out[#out + 1] = "</g></svg>"
  return table.concat(out, "\n") .. "\n"
end

--- Take a screenshot of child `c` (child.lua) into `path` (SVG); returns the screen.
function M.take(c, path, width, height, title)
  local address = c:lua("return vim.fn.serverstart()")
  local screen = M.grab(address, width or 80, height or 16)
  vim.fn.mkdir(vim.fs.dirname(path), "p")
  local f = assert(io.open(path, "w"))
  f:write(M.svg(screen, { title = title }))
  f:close()
  return screen
end

--- The screen's text, one string per row (for checks).
function M.rows(screen)
  local rows = {}
  for r = 0, screen.height - 1 do
    local parts = {}
    for c = 0, screen.width - 1 do
      parts[#parts + 1] = screen.cells[r][c][1]
    end
    rows[#rows + 1] = table.concat(parts)
  end
  return rows
end

return M
