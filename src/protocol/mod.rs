//! The wire: frames in and out (built on `amq-protocol`), and the one place where
//! errors become AMQP reply codes.

pub mod codec;
pub mod error;
pub mod nesting;

pub use codec::{Frame, FrameDecoder};
pub use error::{Exception, ProtocolError};
