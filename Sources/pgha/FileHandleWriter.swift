import Foundation

/// Unbuffered writes to the standard streams.
enum FileHandleWriter {
    static func writeToStandardError(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }
}
