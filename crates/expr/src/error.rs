//! The two ways an expression fails: refused when the policy is saved ([`CompileError`], with a
//! position the policy compiler maps into the XML document), or failing on a request
//! ([`RuntimeError`], which the pipeline turns into `on-error` with `context.LastError`).

use std::fmt;

/// An expression that must be refused when the policy is saved.
///
/// `offset` is a byte offset into the expression text given to [`compile`](super::compile)
/// (so a caller that knows where the attribute value starts in the XML can add the two);
/// `line` and `column` are 1-based, counted in that same text, `column` in characters.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (line {line}, column {column})")]
pub struct CompileError {
    /// Byte offset of the offending token in the expression text.
    pub offset: usize,
    /// 1-based line within the expression text.
    pub line: u32,
    /// 1-based column (in characters) within that line.
    pub column: u32,
    /// What is wrong, in the words of the C# compiler where it has some.
    pub message: String,
}

impl CompileError {
    /// Builds an error at byte `offset` of `src`, computing line and column.
    pub(crate) fn at(src: &str, offset: usize, message: impl Into<String>) -> Self {
        let offset = offset.min(src.len());
        let mut line = 1u32;
        let mut column = 1u32;
        for (i, c) in src.char_indices() {
            if i >= offset {
                break;
            }
            if c == '\n' {
                line = line.saturating_add(1);
                column = 1;
            } else {
                column = column.saturating_add(1);
            }
        }
        Self {
            offset,
            line,
            column,
            message: message.into(),
        }
    }
}

/// What kind of failure a [`RuntimeError`] is; the .NET exception it stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `FormatException`: `int.Parse("x")`, bad base64, bad JSON, bad date.
    Format,
    /// `NullReferenceException`: a member of `null`.
    NullReference,
    /// `InvalidCastException`: `(int)"x"`, `(JArray)` of an object.
    InvalidCast,
    /// `KeyNotFoundException`: an indexer with a missing key.
    KeyNotFound,
    /// `DivideByZeroException`.
    DivideByZero,
    /// `IndexOutOfRangeException` / `ArgumentOutOfRangeException`.
    OutOfRange,
    /// `OverflowException`.
    Overflow,
    /// `ArgumentException`: an argument a method refuses.
    Argument,
    /// `InvalidOperationException`: `First()` of an empty sequence, a child of a `JValue`.
    InvalidOperation,
    /// A member that the value's run-time type does not have (values typed `object`).
    Binder,
    /// The evaluation used up its [`Budget`](super::Budget).
    BudgetExceeded,
}

impl ErrorKind {
    /// The .NET exception type name, used in messages and logs.
    pub fn exception_name(self) -> &'static str {
        match self {
            Self::Format => "FormatException",
            Self::NullReference => "NullReferenceException",
            Self::InvalidCast => "InvalidCastException",
            Self::KeyNotFound => "KeyNotFoundException",
            Self::DivideByZero => "DivideByZeroException",
            Self::OutOfRange => "ArgumentOutOfRangeException",
            Self::Overflow => "OverflowException",
            Self::Argument => "ArgumentException",
            Self::InvalidOperation => "InvalidOperationException",
            Self::Binder => "RuntimeBinderException",
            Self::BudgetExceeded => "BudgetExceededException",
        }
    }
}

/// An evaluation failure. Never a panic: every failure of a compiled expression ends here.
///
/// `reason` and `message` are what `context.LastError.Reason` and `.Message` show, the way
/// Azure reports a failed expression (`ExpressionValueEvaluationFailure`,
/// `Expression evaluation failed. <detail>`); `kind` says which .NET exception it stands for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RuntimeError {
    /// For `context.LastError.Reason`.
    pub reason: String,
    /// For `context.LastError.Message`.
    pub message: String,
    /// The kind of failure.
    pub kind: ErrorKind,
}

/// `LastError.Reason` of every failed expression, as Azure names it.
pub const EVALUATION_FAILURE: &str = "ExpressionValueEvaluationFailure";

impl RuntimeError {
    pub(crate) fn new(kind: ErrorKind, detail: impl fmt::Display) -> Self {
        Self {
            reason: EVALUATION_FAILURE.to_owned(),
            message: format!("Expression evaluation failed. {detail}"),
            kind,
        }
    }

    pub(crate) fn format(detail: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Format, detail)
    }

    pub(crate) fn null_reference() -> Self {
        Self::new(
            ErrorKind::NullReference,
            "Object reference not set to an instance of an object.",
        )
    }

    pub(crate) fn cast(from: &str, to: &str) -> Self {
        Self::new(
            ErrorKind::InvalidCast,
            format_args!("Unable to cast object of type '{from}' to type '{to}'."),
        )
    }

    pub(crate) fn out_of_range(detail: impl fmt::Display) -> Self {
        Self::new(ErrorKind::OutOfRange, detail)
    }

    pub(crate) fn argument(detail: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Argument, detail)
    }

    pub(crate) fn no_member(type_name: &str, member: &str) -> Self {
        Self::new(
            ErrorKind::Binder,
            format_args!("'{type_name}' does not contain a definition for '{member}'."),
        )
    }

    pub(crate) fn key_not_found(key: &str) -> Self {
        Self::new(
            ErrorKind::KeyNotFound,
            format_args!("The given key '{key}' was not present in the dictionary."),
        )
    }
}

/// Result of evaluating one node or builtin.
pub(crate) type RtResult<T> = Result<T, RuntimeError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let e = CompileError::at("ab\ncé x", 7, "m");
        assert_eq!((e.line, e.column), (2, 4));
        let e = CompileError::at("abc", 99, "m");
        assert_eq!((e.offset, e.line, e.column), (3, 1, 4));
    }
}
