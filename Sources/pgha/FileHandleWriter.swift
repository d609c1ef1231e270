import Foundation

/// Unbuffered writes to the standard streams.
enum FileHandleWriter {
    static func writeToStandardError(_ text: String) {
        fflush(nil)  // flush stdout first, so stdout and stderr lines keep their order
        FileHandle.standardError.write(Data(text.utf8))
    }
}
