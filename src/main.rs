fn main() -> std::process::ExitCode {
    daxlink::cli::main()
}
