import ArgumentParser

/// Options every pgha command accepts (`@OptionGroup var global: GlobalOptions`).
struct GlobalOptions: ParsableArguments {
    @Flag(name: .shortAndLong, help: "Print only results and errors, no progress lines.")
    var quiet = false

    /// Prints a progress line to standard output unless `--quiet`.
    func progress(_ line: String) {
        if !quiet { print(line) }
    }
}

/// Writes a line to standard error.
func printError(_ line: String) {
    var stream = StandardError()
    print(line, to: &stream)
}

/// `TextOutputStream` over stderr.
struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        FileHandleWriter.writeToStandardError(string)
    }
}
