import PlainText
import Yams

/// A YAML syntax error as someone editing the file needs it: the line and column, libyaml's
/// problem in words, and what to change. Used for the seed's YAML block (`YAMLConfiguration`) and
/// for playbooks (the Migration module), so both explain the same mistake the same way.
///
/// Nothing of the file's text is quoted (a line may hold a password); a character at the
/// position is named only when it is a tab or a YAML indicator.
public struct YAMLDiagnosis: Sendable, Hashable, CustomStringConvertible {
    /// 1-based, nil only when libyaml gave no position.
    public var line: Int?
    public var column: Int?
    /// The duplicated key, for a duplicate key; empty otherwise.
    public var key: String
    /// The problem and the fix: `found a tab character where indentation is expected: indent with spaces`.
    public var message: String

    public var description: String {
        let place = [line.map(String.init), column.map(String.init)].compactMap { $0 }.joined(separator: ":")
        return (place.isEmpty ? "" : place + ": ") + (key.isEmpty ? "" : key + ": ") + message
    }

    /// libyaml's nesting limit (Yams' `MAX_NESTING_LEVEL`).
    static let nestingLimit = 1000

    /// Diagnoses an error thrown by `Yams.compose(yaml: text)`.
    public init(_ error: any Error, text: String) {
        key = ""
        guard let yamlError = error as? YamlError else {
            message = "cannot parse the YAML: fix the syntax at the start of the file"
            return
        }
        switch yamlError {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            line = mark.line
            column = mark.column
            let character = Self.character(atLine: mark.line, column: mark.column, in: text)
            message = Self.explain(problem: problem, context: context?.text, character: character)
        case .duplicatedKeysInMapping(let duplicates, let context):
            line = context.mark.line
            column = context.mark.column
            key = duplicates.sorted().first.map { UTF8Text.escaped($0) } ?? ""
            let names = duplicates.sorted().map { "'\(UTF8Text.escaped($0, limit: 60))'" }.joined(separator: ", ")
            message = "duplicate key \(names) in this mapping: keep one of them (YAML would silently use only one value)"
        case .reader(let problem, let offset, let value, _):
            if let offset {
                (line, column) = UTF8Text.position(ofCharacter: offset, in: text)
            }
            if problem.contains("control characters") {
                let name = value >= 0 ? Unicode.Scalar(UInt32(value)).map(UTF8Text.codePoint) ?? "a control character" : "a control character"
                message = "the control character \(name) is not allowed in YAML: remove it (write \\t or \\n inside double quotes if it is meant)"
            } else if problem.contains("UTF-8") || problem.contains("Unicode") {
                message = "the file is not valid UTF-8 here (\(problem)): save it as UTF-8"
            } else {
                message = "cannot read the YAML (\(problem)): save the file as UTF-8 text"
            }
        case .memory:
            message = "the YAML is too large to parse: check that this is the right file"
        case .dataCouldNotBeDecoded:
            message = "the file is not UTF-8: save it as UTF-8"
        case .no, .writer, .emitter, .representer:
            message = "cannot parse the YAML (\(yamlError)): fix the syntax at this position"
        @unknown default:
            message = "cannot parse the YAML: fix the syntax at this position"
        }
    }

    /// The character at a 1-based line and column, when the text has one there.
    static func character(atLine line: Int, column: Int, in text: String) -> Unicode.Scalar? {
        var currentLine = 1
        var currentColumn = 1
        for scalar in text.unicodeScalars {
            if currentLine == line, currentColumn == column { return scalar }
            if scalar == "\n" {
                if currentLine == line { return nil }
                currentLine += 1
                currentColumn = 1
            } else {
                currentColumn += 1
            }
        }
        return nil
    }

    /// libyaml's problem, and what to do about it.
    static func explain(problem: String, context: String?, character: Unicode.Scalar?) -> String {
        let what = problem + (context.map { " (\($0))" } ?? "")
        let fix: String
        if problem.contains("Maximum nesting level") {
            return "the document is nested more than \(nestingLimit) levels deep: check that this is the right file (a configuration needs a few levels)"
        } else if character == "\t" || problem.contains("tab character") {
            return "found a tab character where YAML expects indentation or a value: indent with spaces, and quote a value that contains a tab"
        } else if problem.contains("cannot start any token") {
            if let character, "@`%".unicodeScalars.contains(character) {
                fix = "a value starting with '\(character)' must be quoted"
            } else if let character, UTF8Text.isHidden(character) {
                fix = "remove the invisible character \(UTF8Text.codePoint(character))"
            } else {
                fix = "quote the value, or check the indentation"
            }
        } else if problem.contains("could not find expected ':'") {
            fix = "write each entry as 'key: value' (a space after the colon), and close any quote or bracket opened before this line"
        } else if problem.contains("mapping values are not allowed") {
            fix = "quote a value that contains ': ', and start a nested mapping on its own, indented line"
        } else if problem.contains("expected ',' or ']'") {
            fix = "close the list with ']' and separate its items with commas (quote an item that contains , [ ] { } or :)"
        } else if problem.contains("expected ',' or '}'") {
            fix = "close the mapping with '}' and separate its entries with commas (quote a value that contains , [ ] { } or :)"
        } else if problem.contains("expected '-' indicator") {
            fix = "start every item of this list with '- ' in the same column"
        } else if problem.contains("<document start>") {
            fix = "check the indentation of this line (top-level keys start in column 1), or remove a stray '---' or '...'"
        } else if problem.contains("did not find expected key") {
            fix = "check the indentation: the keys of one mapping must start in the same column"
        } else if problem.contains("expected node content") {
            fix = "write a value here, or quote it if it starts with a special character"
        } else if problem.contains("undefined alias") {
            fix = "'*name' refers to an anchor '&name' that is not defined: quote the value if a literal '*' is meant"
        } else if problem.contains("an alias") || problem.contains("an anchor") {
            fix = "'&' and '*' start anchors and aliases: quote the value if a literal '&' or '*' is meant"
        } else if problem.contains("end of stream") {
            fix = "close the quote or bracket opened before this point (the file may have been cut short)"
        } else if problem.contains("escape") || problem.contains("hexdecimal") {
            fix = "inside double quotes write a backslash as \\\\ (or use single quotes)"
        } else if problem.contains("block sequence entries are not allowed") {
            fix = "start the list on its own line below its key, indented, or write it as [a, b]"
        } else if problem.contains("block scalar") {
            fix = "'|' and '>' start a multi-line text: quote the value if a literal '|' or '>' is meant"
        } else if problem.contains("tag") {
            fix = "'!' starts a YAML tag: quote the value if a literal '!' is meant"
        } else if problem.contains("directive") {
            fix = "'%' starts a YAML directive: quote the value if a literal '%' is meant"
        } else {
            fix = "fix the YAML syntax at this position (indent with spaces; quote values that contain ': ' or ' #' or start with a special character)"
        }
        return what + ": " + fix
    }
}
