import ArgumentParser
import Sandbox

extension SandboxCommand {
    /// `pgha sandbox env`.
    struct Env: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print `export` lines pointing the application's variables at the sandbox.",
            discussion: """
                Use as `eval "$(pgha sandbox env)"`. Passwords are never printed: password \
                variables read their file when the shell evaluates the line.
                """
        )

        @OptionGroup var location: SandboxLocationOptions

        func run() async throws {
            do {
                let (configuration, stored) = try await location.configuration()
                if !stored {
                    printError("note: no sandbox.json in \(configuration.baseDir) yet; printing the defaults (run `pgha sandbox up`)")
                }
                print(SandboxEnvironment(configuration).exportLines(), terminator: "")
            } catch {
                throw failure(error)
            }
        }
    }
}
