//! What a refused call carries for a program, in the gRPC richer error
//! model: the `grpc-status-details-bin` trailer holds a `google.rpc.Status`
//! whose `details` are `google.protobuf.Any` messages. Standard helpers read
//! it (grpcio-status's `rpc_status.from_call`, grpc-go's
//! `status.FromError(err).Details()`, tonic-types), so a client needs no code
//! of ours to see why an apply was refused.
//!
//! The two messages are written here rather than generated: they are fixed
//! by the gRPC specification, and three fields each.

use prost::Message;

use super::proto::v1 as pb;

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// The status code (`google.rpc.Code`, the gRPC code's number).
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// The message for a person.
    #[prost(string, tag = "2")]
    pub message: String,
    /// The details for a program.
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    /// `type.googleapis.com/` and the message's full name.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The message, encoded.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// The type URL of a [`pb::RemovalRefused`] in an [`Any`].
pub const REMOVAL_REFUSED: &str = "type.googleapis.com/lnetd.encap.v1.RemovalRefused";

/// A status with `detail` (of type `type_url`) in its details, the gRPC way.
pub(crate) fn status_with(code: tonic::Code, message: String, type_url: &str, detail: &impl Message) -> tonic::Status {
    let rich = RpcStatus {
        code: code as i32,
        message: message.clone(),
        details: vec![Any { type_url: type_url.to_owned(), value: detail.encode_to_vec() }],
    };
    tonic::Status::with_details(code, message, rich.encode_to_vec().into())
}

/// The removal guard's refusal in `status`'s details, if it carries one.
pub fn removal_refused(status: &tonic::Status) -> Option<pb::RemovalRefused> {
    let rich = RpcStatus::decode(status.details()).ok()?;
    let any = rich.details.iter().find(|a| a.type_url == REMOVAL_REFUSED)?;
    pb::RemovalRefused::decode(any.value.as_slice()).ok()
}
