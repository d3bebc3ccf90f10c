import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/", "out/", "out-test/", "node_modules/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      eqeqeq: "error",
      curly: "error",
      "no-throw-literal": "error",
      "@typescript-eslint/no-floating-promises": "off",
    },
  },
);
