// Gates are lists of `Verification.CheckResult`, the check type the verification suite produces
// too. Re-exported so that every user of Migration (the CLI, tests) sees `CheckResult` and
// `Verdict` without importing Verification itself.
@_exported public import Verification

extension CheckResult {
    /// This check with every known secret masked (name, observed, expected and advice).
    public func redacted(by redactor: SecretRedactor) -> CheckResult {
        CheckResult(
            name: redactor.redact(name), verdict: verdict, observed: redactor.redact(observed),
            expected: expected.map(redactor.redact), advice: advice.map(redactor.redact), durationMs: durationMs
        )
    }
}
