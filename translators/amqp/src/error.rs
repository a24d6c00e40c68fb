//! AMQP reply codes (spec §1.1 "Constants") and the errors that close a channel or a connection.

use gateway_core::{BackendError, ErrorSource};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ReplyCode {
    Success = 200,
    ContentTooLarge = 311,
    NoRoute = 312,
    ConnectionForced = 320,
    InvalidPath = 402,
    AccessRefused = 403,
    NotFound = 404,
    ResourceLocked = 405,
    PreconditionFailed = 406,
    FrameError = 501,
    SyntaxError = 502,
    CommandInvalid = 503,
    ChannelError = 504,
    UnexpectedFrame = 505,
    ResourceError = 506,
    NotAllowed = 530,
    NotImplemented = 540,
    InternalError = 541,
}

impl ReplyCode {
    /// The spec's name, which RabbitMQ also puts at the start of its reply texts.
    pub fn name(self) -> &'static str {
        match self {
            ReplyCode::Success => "OK",
            ReplyCode::ContentTooLarge => "CONTENT_TOO_LARGE",
            ReplyCode::NoRoute => "NO_ROUTE",
            ReplyCode::ConnectionForced => "CONNECTION_FORCED",
            ReplyCode::InvalidPath => "INVALID_PATH",
            ReplyCode::AccessRefused => "ACCESS_REFUSED",
            ReplyCode::NotFound => "NOT_FOUND",
            ReplyCode::ResourceLocked => "RESOURCE_LOCKED",
            ReplyCode::PreconditionFailed => "PRECONDITION_FAILED",
            ReplyCode::FrameError => "FRAME_ERROR",
            ReplyCode::SyntaxError => "SYNTAX_ERROR",
            ReplyCode::CommandInvalid => "COMMAND_INVALID",
            ReplyCode::ChannelError => "CHANNEL_ERROR",
            ReplyCode::UnexpectedFrame => "UNEXPECTED_FRAME",
            ReplyCode::ResourceError => "RESOURCE_ERROR",
            ReplyCode::NotAllowed => "NOT_ALLOWED",
            ReplyCode::NotImplemented => "NOT_IMPLEMENTED",
            ReplyCode::InternalError => "INTERNAL_ERROR",
        }
    }
}

/// Whether an error ends only its channel (soft errors) or the whole connection (hard errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Channel,
    Connection,
}

/// An error to report with `channel.close` or `connection.close`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpError {
    pub code: ReplyCode,
    pub text: String,
    pub scope: Scope,
    /// The method that failed (0, 0 when none).
    pub class_id: u16,
    pub method_id: u16,
}

impl AmqpError {
    pub fn channel(code: ReplyCode, text: impl Into<String>) -> Self {
        Self::new(code, text, Scope::Channel)
    }

    pub fn connection(code: ReplyCode, text: impl Into<String>) -> Self {
        Self::new(code, text, Scope::Connection)
    }

    fn new(code: ReplyCode, text: impl Into<String>, scope: Scope) -> Self {
        AmqpError {
            code,
            text: text.into(),
            scope,
            class_id: 0,
            method_id: 0,
        }
    }

    pub fn on_method(mut self, class_id: u16, method_id: u16) -> Self {
        self.class_id = class_id;
        self.method_id = method_id;
        self
    }

    /// The reply text as RabbitMQ words it: the code's name, a dash, the detail. Clients show it.
    pub fn reply_text(&self) -> String {
        let text = format!("{} - {}", self.code.name(), self.text);
        // A short string holds at most 255 bytes; cut at a character boundary.
        let mut end = text.len().min(255);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text[..end].to_owned()
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::channel(ReplyCode::NotFound, what)
    }

    pub fn precondition(what: impl Into<String>) -> Self {
        Self::channel(ReplyCode::PreconditionFailed, what)
    }

    pub fn access_refused(what: impl Into<String>) -> Self {
        Self::channel(ReplyCode::AccessRefused, what)
    }

    pub fn command_invalid(what: impl Into<String>) -> Self {
        Self::connection(ReplyCode::CommandInvalid, what)
    }
}

impl From<BackendError> for AmqpError {
    /// A request the backend refuses fails the channel (PRECONDITION_FAILED); an unavailable
    /// backend ends the connection with RESOURCE_ERROR (506), so the client reconnects, perhaps
    /// to another instance; a fault inside the gateway is INTERNAL_ERROR (541).
    fn from(e: BackendError) -> Self {
        match e.source_kind() {
            ErrorSource::Client => AmqpError::channel(ReplyCode::PreconditionFailed, e.to_string()),
            ErrorSource::Backend => AmqpError::connection(
                ReplyCode::ResourceError,
                format!("the message store is unavailable: {e}"),
            ),
            ErrorSource::Internal => AmqpError::connection(ReplyCode::InternalError, e.to_string()),
        }
    }
}

pub type AmqpResult<T> = Result<T, AmqpError>;
