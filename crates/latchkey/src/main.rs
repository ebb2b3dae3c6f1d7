//! The `latchkey` command; everything lives in the library.

/// A refresh makes many small, short-lived allocations; mimalloc serves them
/// for less CPU than the system allocator (`BENCHMARKS.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    latchkey::main()
}
