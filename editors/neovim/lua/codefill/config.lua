-- codefill.nvim configuration: one table of defaults, deep-merged with the user's table and
-- validated. Unknown keys and values of the wrong type are reported (vim.notify, WARN) and
-- replaced by their defaults; setup() never raises because of its options.
local M = {}

--- The defaults. Every key is documented in doc/codefill.txt and editors/neovim/README.md.
M.defaults = {
  -- Offer suggestions when Neovim starts (`:Codefill toggle` flips it at run time).
  enabled = true,
  server = {
    -- Command that starts the language server, as a list ({ "codefill", "serve" }) or the path
    -- of the `codefill` executable (a string; "serve" is appended). nil: look for `codefill` in
    -- the active virtualenv ($VIRTUAL_ENV/bin), then on $PATH.
    cmd = nil,
    -- Extra environment variables for the server process.
    env = {},
    -- Files or folders that mark a project root. One server (LSP client) runs per root; files
    -- outside any marked root use the current directory when they are under it, else their
    -- own folder.
    root_markers = { ".git", ".hg", "pyproject.toml", "package.json", "go.mod", "Cargo.toml" },
    -- How many times a crashed server is restarted automatically (per root) before giving up.
    max_restarts = 3,
  },
  -- The server's own settings tree (docs/settings.md), e.g.
  -- { engine = { model = "~/models/qwen2.5-coder-1.5b-q4_k_m.gguf" }, prompt = { max_tokens = 48 } }.
  -- Sent as initializationOptions and answered to workspace/configuration (section "codefill").
  settings = {},
  -- Per-filetype switch; "*" is the default for filetypes not listed.
  filetypes = {
    ["*"] = true,
    help = false,
    gitcommit = false,
    gitrebase = false,
    TelescopePrompt = false,
  },
  -- Use Neovim's built-in inline completion (vim.lsp.inline_completion, Neovim 0.12) instead of
  -- codefill's own renderer: "auto" (when present), true, false. The built-in one has no
  -- streaming and no word/line accepts.
  native = "auto",
  -- Ask with codefill/complete and show codefill/partial updates as the suggestion grows;
  -- false: use the standard textDocument/inlineCompletion request.
  streaming = true,
  trigger = {
    -- Ask for a suggestion after each change in insert mode (false: only with keymaps.trigger).
    auto = true,
    -- Wait this long after the last change before asking (the server adds its own adaptive
    -- debounce; keep this small).
    debounce_ms = 30,
  },
  ghost = {
    -- Highlight group of the ghost text (defined as a link to Comment unless it exists).
    hl_group = "CodefillSuggestion",
    -- While the completion popup menu is open: "hide" the ghost text (and ask again when the
    -- menu closes) or "show" it beside the menu.
    pum = "hide",
  },
  -- Insert-mode keymaps; set one to false to leave the key alone. accept falls back to the key's
  -- normal behaviour when no suggestion is shown. next/prev cycle through the candidates (the
  -- server sends several with settings = { completion = { candidates = N } }) and ask for a
  -- suggestion when none is shown.
  keymaps = {
    accept = "<Tab>",
    accept_word = "<M-Right>",
    accept_line = "<M-C-Right>",
    dismiss = "<C-]>",
    trigger = "<M-\\>",
    next = "<M-]>",
    prev = "<M-[>",
  },
  -- Lines of server log (window/logMessage and client events) kept for `:Codefill log`.
  log_lines = 1000,
}

-- Schema: the allowed types of each option path. `kind`: "section" (known children, merged
-- key by key), "map" (any keys, merged; `values` = allowed value types), "list" (replaced
-- whole; `items` = allowed item types). `one_of`: allowed values.
local schema = {
  enabled = { types = { "boolean" } },
  server = { types = { "table" }, kind = "section" },
  ["server.cmd"] = { types = { "nil", "string", "table" }, items = { "string" } },
  ["server.env"] = { types = { "table" }, kind = "map", values = { "string", "number" } },
  ["server.root_markers"] = { types = { "table" }, kind = "list", items = { "string" } },
  ["server.max_restarts"] = { types = { "number" }, min = 0 },
  settings = { types = { "table" }, kind = "map" },
  filetypes = { types = { "table" }, kind = "map", values = { "boolean" } },
  native = { types = { "string", "boolean" }, one_of = { "auto", true, false } },
  streaming = { types = { "boolean" } },
  trigger = { types = { "table" }, kind = "section" },
  ["trigger.auto"] = { types = { "boolean" } },
  ["trigger.debounce_ms"] = { types = { "number" }, min = 0 },
  ghost = { types = { "table" }, kind = "section" },
  ["ghost.hl_group"] = { types = { "string" } },
  ["ghost.pum"] = { types = { "string" }, one_of = { "hide", "show" } },
  keymaps = { types = { "table" }, kind = "section" },
  ["keymaps.accept"] = { types = { "string", "boolean" }, one_of_bool = { false } },
  ["keymaps.accept_word"] = { types = { "string", "boolean" }, one_of_bool = { false } },
  ["keymaps.accept_line"] = { types = { "string", "boolean" }, one_of_bool = { false } },
  ["keymaps.dismiss"] = { types = { "string", "boolean" }, one_of_bool = { false } },
  ["keymaps.trigger"] = { types = { "string", "boolean" }, one_of_bool = { false } },
  ["keymaps.next"] = { types = { "string", "boolean" }, one_of_bool = { false } },
  ["keymaps.prev"] = { types = { "string", "boolean" }, one_of_bool = { false } },
  log_lines = { types = { "number" }, min = 0 },
}
M.schema = schema

local function show(v)
  if type(v) == "string" then
    return string.format("%q", v)
  end
  return vim.inspect(v, { newline = " ", indent = "" })
end

local function is_list(t)
  if vim.islist then
    return vim.islist(t)
  end
  return vim.tbl_islist(t)
end

local function check_value(path, spec, value, problems)
  local t = type(value)
  if not vim.tbl_contains(spec.types, t) then
    problems[#problems + 1] = string.format("%s: expected %s, got %s (%s); using the default",
      path, table.concat(spec.types, " or "), t, show(value))
    return false
  end
  if spec.one_of and not vim.tbl_contains(spec.one_of, value) then
    local names = vim.tbl_map(show, spec.one_of)
    problems[#problems + 1] = string.format("%s: expected one of %s, got %s; using the default",
      path, table.concat(names, ", "), show(value))
    return false
  end
  if spec.one_of_bool and t == "boolean" and not vim.tbl_contains(spec.one_of_bool, value) then
    problems[#problems + 1] = string.format("%s: expected a key (string) or false, got %s; using the default",
      path, show(value))
    return false
  end
  if spec.min and t == "number" and value < spec.min then
    problems[#problems + 1] = string.format("%s: expected a number >= %s, got %s; using the default",
      path, spec.min, show(value))
    return false
  end
  if t == "table" and spec.items then
    if not is_list(value) or #value == 0 then
      problems[#problems + 1] = string.format("%s: expected a non-empty list, got %s; using the default",
        path, show(value))
      return false
    end
    for i, item in ipairs(value) do
      if not vim.tbl_contains(spec.items, type(item)) then
        problems[#problems + 1] = string.format("%s[%d]: expected %s, got %s; using the default",
          path, i, table.concat(spec.items, " or "), show(item))
        return false
      end
    end
  end
  return true
end

--- Merge `user` into `defaults` under `prefix`, validating against the schema.
local function merge(defaults, user, prefix, problems)
  local out = vim.deepcopy(defaults)
  for key, value in pairs(user) do
    local path = prefix == "" and tostring(key) or (prefix .. "." .. tostring(key))
    local spec = type(key) == "string" and schema[path] or nil
    if not spec then
      problems[#problems + 1] = string.format("unknown option %s (ignored)", path)
    elseif check_value(path, spec, value, problems) then
      if spec.kind == "section" then
        out[key] = merge(defaults[key] or {}, value, path, problems)
      elseif spec.kind == "map" then
        local map = vim.deepcopy(defaults[key] or {})
        for k, v in pairs(value) do
          if spec.values and not vim.tbl_contains(spec.values, type(v)) then
            problems[#problems + 1] = string.format("%s[%s]: expected %s, got %s (ignored)",
              path, show(k), table.concat(spec.values, " or "), show(v))
          else
            map[k] = vim.deepcopy(v)
          end
        end
        out[key] = map
      else
        out[key] = vim.deepcopy(value)
      end
    end
  end
  return out
end

--- Validate and merge a user table. Returns the merged config and the list of problems.
---@param user table|nil
---@return table config, string[] problems
function M.resolve(user)
  local problems = {}
  if user == nil then
    return vim.deepcopy(M.defaults), problems
  end
  if type(user) ~= "table" then
    problems[1] = string.format("setup() expects a table, got %s; using the defaults", type(user))
    return vim.deepcopy(M.defaults), problems
  end
  return merge(M.defaults, user, "", problems), problems
end

return M
