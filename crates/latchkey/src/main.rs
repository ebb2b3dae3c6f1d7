//! The `latchkey` command; everything lives in the library.

fn main() -> std::process::ExitCode {
    latchkey::main()
}
