-- An in-process stand-in for `codefill serve`, loaded into a child Neovim with dofile(): the
-- LSP client runs it through a cmd function (as Neovim's own LSP tests do), so the plugin's
-- requests, cancels and handlers go through the real vim.lsp client. It answers
-- codefill/complete and textDocument/inlineCompletion from _G.fake, keyed by the text of the
-- cursor line before the cursor:
--   _G.fake.by_prefix["x = "] = { reply = { text = "a", candidates = { "a", "b" } },
--                                  partials = { "a" }, delay = 50 }
--   (inlineCompletion: reply = { items = { { insertText = "a" }, ... } })
-- Any other place is answered like the server's typing-through: with the suggestion shown there
-- (its candidates in their order, the first one as text), or "" when none is shown.
-- _G.fake.requests lists every request's method and params; _G.fake.cancelled the cancels.
return function()
  local fake = { by_prefix = {}, requests = {}, cancelled = {}, delay = 20 }
  _G.fake = fake

  local function prefix_of(params)
    local buf = vim.uri_to_bufnr(params.textDocument.uri)
    local line = vim.api.nvim_buf_get_lines(buf, params.position.line, params.position.line + 1, false)[1] or ""
    return line:sub(1, params.position.character)
  end

  local function echo(method)
    local s = require("codefill").get_suggestion()
    local cands = s and s.candidates or {}
    if method == "textDocument/inlineCompletion" then
      local items = {}
      for _, c in ipairs(cands) do
        items[#items + 1] = { insertText = c }
      end
      return { items = items }
    end
    return { text = cands[1] or "", candidates = cands, source = "typing_through", reason = "" }
  end

  local function cmd(dispatchers)
    local closing, id = false, 0
    return {
      request = function(method, params, callback)
        id = id + 1
        local rid = id
        if method == "initialize" then
          callback(nil, { capabilities = { inlineCompletionProvider = true, textDocumentSync = 2 } })
        elseif method == "shutdown" then
          callback(nil, vim.NIL)
        elseif method == "codefill/status" then
          callback(nil, { model = { state = "ready", backend = "local" } })
        elseif method == "codefill/complete" or method == "textDocument/inlineCompletion" then
          fake.requests[#fake.requests + 1] = { method = method, params = params }
          local plan = fake.by_prefix[prefix_of(params)]
          local reply = plan and plan.reply or echo(method)
          local delay = plan and plan.delay or fake.delay
          for i, text in ipairs(plan and plan.partials or {}) do
            vim.defer_fn(function()
              if not fake.cancelled[rid] and params.streamId then
                dispatchers.notification("codefill/partial", { streamId = params.streamId, text = text })
              end
            end, math.floor(delay * i / (#plan.partials + 1)))
          end
          vim.defer_fn(function()
            if fake.cancelled[rid] then
              callback({ code = -32800, message = "cancelled" }, nil)
            else
              callback(nil, vim.deepcopy(reply))
            end
          end, delay)
        else
          callback(nil, vim.NIL)
        end
        return true, rid
      end,
      notify = function(method, params)
        if method == "$/cancelRequest" then
          fake.cancelled[params.id] = true
        elseif method == "exit" then
          closing = true
          dispatchers.on_exit(0, 15)
        end
        return true
      end,
      is_closing = function()
        return closing
      end,
      terminate = function()
        closing = true
      end,
    }
  end

  -- codefill starts this instead of `codefill serve`.
  require("codefill.server").resolve_cmd = function()
    return cmd, nil
  end
  return fake
end
