//! The error every command returns: `{ "code": string, "message": string }` on the JavaScript side.

use psystem_api::ApiError;
use serde::Serialize;

/// An error crossing the IPC boundary. `code` is [`ApiError::code`] for API errors (`plugin_not_found`,
/// `plugin_disabled`, `entry_not_found`, `invalid_manifest`, `invalid_config`, `job_not_found`, `job_busy`, `source`,
/// `destination`, `job`, `local_database`, `status_file`, `manifest`, `release_not_found`, `transport`, `release`,
/// `home`) or one of the shell's own: `job_running`, `database_not_found`, `invalid_database`, `keychain`, `io`,
/// `invalid_argument`. `message` is for people and never holds a password.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IpcError {
    /// Stable, snake_case code the UI branches on.
    pub code: String,
    /// What failed, where, and what to do.
    pub message: String,
}

impl IpcError {
    /// An error with a shell code.
    pub fn new(code: &str, message: impl Into<String>) -> IpcError {
        IpcError {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for IpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for IpcError {}

impl From<ApiError> for IpcError {
    fn from(e: ApiError) -> IpcError {
        IpcError {
            code: e.code().to_string(),
            message: psystem_core::error::error_chain(&e),
        }
    }
}

impl From<std::io::Error> for IpcError {
    fn from(e: std::io::Error) -> IpcError {
        IpcError::new("io", e.to_string())
    }
}

/// The result type of every command.
pub type IpcResult<T> = Result<T, IpcError>;
