//! The `ora` binary: parse the command line, run it, turn the outcome into an exit code.
//! Everything else lives in the library; this file must stay thin.

fn main() {
    let code = ora::cli::main();
    std::process::exit(code);
}
