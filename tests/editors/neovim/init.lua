-- Init file of the child Neovims in the codefill.nvim tests: load the plugin from the
-- repository (CODEFILL_TEST_PLUGIN = editors/neovim), no user config, no swap files, and record
-- every vim.notify call in _G.test_notes so the tests can check what the user would be told.
vim.opt.runtimepath:prepend(assert(vim.env.CODEFILL_TEST_PLUGIN, "CODEFILL_TEST_PLUGIN is not set"))
vim.o.swapfile = false
vim.o.shortmess = vim.o.shortmess .. "I"
vim.o.updatetime = 100
_G.test_notes = {}
vim.notify = function(msg, level)
  table.insert(_G.test_notes, { msg = tostring(msg), level = level or vim.log.levels.INFO })
end
