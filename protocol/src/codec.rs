//! Encoding: bincode 2 (fixed-width little-endian integers) behind `encode` / `decode`, a leading
//! wire version byte, a hard size limit checked before anything is allocated, and no trailing
//! bytes. The encoding is canonical: `encode(decode(b)?)? == b` for every `b` that decodes.

use bincode::{
    config::{Config, Configuration, Fixint, LittleEndian, NoLimit},
    de::{read::Reader, Decoder},
    error::{AllowedEnumVariants, DecodeError},
    Decode, Encode,
};

use crate::{ContactOp, Control, Error, Message, Receipt, Result, SignedHeader};

/// The first byte of every frame. A frame with another first byte is refused with
/// [`Error::UnsupportedVersion`].
pub const WIRE_VERSION: u8 = 1;

/// The largest frame (version byte included) that `encode` produces and `decode` accepts.
pub const MAX_FRAME_LEN: usize = crate::MAX_BODY_LEN + 4 * 1024;

/// The largest room-sync page frame.
pub const MAX_SYNC_PAGE_LEN: usize = 2 * 1024 * 1024;

/// The largest pipe frame: the largest envelope plus the version byte, the variant tag, the id and
/// the envelope's length prefix.
const MAX_PIPE_FRAME_LEN: usize = MAX_FRAME_LEN + 1 + 4 + 8 + 8;

fn raw_config() -> Configuration<LittleEndian, Fixint, NoLimit> {
    bincode::config::standard().with_fixed_int_encoding()
}

fn limited_config<const LIMIT: usize>() -> impl Config {
    raw_config().with_limit::<LIMIT>()
}

/// The canonical bytes of `value` without version byte, as used inside signed payloads.
#[allow(clippy::expect_used)]
pub(crate) fn raw<T: Encode>(value: &T) -> Vec<u8> {
    // ok: our wire types are plain data (no RefCell, paths or custom encoders) and a Vec writer
    // never runs out of space, so bincode has no error to report here.
    let encoded = bincode::encode_to_vec(value, raw_config());
    encoded.expect("plain data encodes into a Vec") // ok: cannot fail, see above
}

/// A type that travels as a frame: it has a name for error messages and a size limit.
pub trait Wire: Encode + Decode<()> {
    /// The type's name in errors ("message", "control", ...).
    const NAME: &'static str;
    /// The largest frame of this type, version byte included.
    const MAX_LEN: usize = MAX_FRAME_LEN;
}

impl Wire for Message {
    const NAME: &'static str = "message";
}
impl Wire for Control {
    const NAME: &'static str = "control";
}
impl Wire for crate::RoomOp {
    const NAME: &'static str = "room operation";
}
impl Wire for Receipt {
    const NAME: &'static str = "receipt";
}
impl Wire for SignedHeader {
    const NAME: &'static str = "signed header";
}
impl Wire for crate::RouteRecord {
    const NAME: &'static str = "route record";
}
impl Wire for crate::seal::SealKeyRecord {
    const NAME: &'static str = "seal key record";
}

/// What travels between nodes, over gossip and direct streams alike.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Envelope {
    /// A message.
    Message(Message),
    /// A revoke or a burn.
    Control(Control),
    /// A deletion receipt, for the account that signed a revoke or burn (direct paths only).
    Receipt(Receipt),
    /// A contact operation, for the account it names (direct paths only).
    Contact(ContactOp),
    /// A stream frame: for an account on a pipe, or for a room on its topic; never stored.
    Stream(crate::Stream),
    /// A presence notice for a contact (direct paths only); never stored.
    Presence(crate::Presence),
    /// A founded room's operation: on the room's topic and in its sync pages.
    Room(crate::RoomOp),
    /// An invitation, for the invitee (direct paths only): the room's `Create` operation, so the
    /// invitee knows the room's name and founder, and the `Invite` operation naming it.
    Invite {
        /// The room's `Create` operation.
        create: crate::RoomOp,
        /// The `Invite` operation.
        invite: crate::RoomOp,
    },
    /// An account's seal-key record for a private room's members (on the room's topic only), so
    /// members that never post are sealed to their published key too.
    SealKey(crate::seal::SealKeyAnnouncement),
}

impl Wire for Envelope {
    const NAME: &'static str = "envelope";
}

/// A receiving node's answer to a direct request: names what happened, so the sender can tell
/// which request failed and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum Ack {
    /// Verified and stored (or applied, for a control message).
    Stored,
    /// Already had it; nothing changed.
    Duplicate,
    /// Refused, with the stable error code (e.g. 4118 invalid signature, 4111 tombstoned).
    Refused {
        /// The [`crate::Code`] number.
        code: u16,
    },
}

impl Wire for Ack {
    const NAME: &'static str = "ack";
}

/// One frame on a direct pipe: the long-lived stream a node keeps to each peer it delivers to
/// (`/tim/direct/2.0.0`). Requests carry the sender's id; each answer names the request it
/// answers, so many requests share one stream and answers may come in any order.
///
/// Its decoding (written out below, the same bytes as the derived one) refuses an envelope length
/// over the bytes the frame holds before allocating it, so a short frame cannot make the receiver
/// reserve the limit.
#[derive(Debug, Clone, PartialEq, Eq, Encode)]
pub enum PipeFrame {
    /// An [`Envelope`] frame for the receiving node.
    Request {
        /// Chosen by the sender, unique on this pipe.
        id: u64,
        /// The encoded [`Envelope`], checked by the receiver like any inbound item.
        envelope: Vec<u8>,
    },
    /// The receiving node's answer to request `id`.
    Answer {
        /// The request answered.
        id: u64,
        /// What became of it.
        ack: Ack,
    },
}

impl Wire for PipeFrame {
    const NAME: &'static str = "pipe frame";
    /// The largest envelope plus the version byte, the variant tag, the id and the length prefix.
    const MAX_LEN: usize = MAX_PIPE_FRAME_LEN;
}

impl<Ctx> Decode<Ctx> for PipeFrame {
    fn decode<D: Decoder<Context = Ctx>>(decoder: &mut D) -> std::result::Result<Self, DecodeError> {
        match u32::decode(decoder)? {
            0 => Ok(PipeFrame::Request {
                id: u64::decode(decoder)?,
                envelope: bytes_present(decoder)?,
            }),
            1 => Ok(PipeFrame::Answer {
                id: u64::decode(decoder)?,
                ack: Ack::decode(decoder)?,
            }),
            found => Err(DecodeError::UnexpectedVariant {
                type_name: "PipeFrame",
                allowed: &AllowedEnumVariants::Range { min: 0, max: 1 },
                found,
            }),
        }
    }
}
bincode::impl_borrow_decode!(PipeFrame);

/// A length-prefixed byte string (as bincode encodes a `Vec<u8>`), refused as truncated when the
/// input holds fewer bytes than the prefix claims, before anything is allocated for it.
pub(crate) fn bytes_present<D: Decoder>(decoder: &mut D) -> std::result::Result<Vec<u8>, DecodeError> {
    let len = u64::decode(decoder)?;
    let len = usize::try_from(len).map_err(|_| DecodeError::OutsideUsizeRange(len))?;
    if decoder.reader().peek_read(len).is_none() {
        // Only slice readers can peek, and `decode` reads only slices: the bytes are not there.
        return Err(DecodeError::UnexpectedEnd { additional: len });
    }
    decoder.claim_bytes_read(len)?;
    let mut bytes = vec![0u8; len];
    decoder.reader().read(&mut bytes)?;
    Ok(bytes)
}

/// A member catching up asks a peer for a room's history after a point of that peer's log.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct SyncRequest {
    /// The room.
    pub room: crate::RoomId,
    /// The last sequence number of the peer's room log already synced (0: from the start of what
    /// the peer serves).
    pub after: u64,
    /// Most items wanted in this page.
    pub limit: u32,
    /// For a founded room: proof that the asker speaks for a member (a private room is served
    /// only to its members and invitees); `None` for other rooms.
    pub member: Option<crate::room::MemberProof>,
}

impl Wire for SyncRequest {
    const NAME: &'static str = "sync request";
}

/// A page of a room's history: encoded envelopes, each verified by the receiver exactly as if it
/// came by gossip.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct SyncPage {
    /// `Envelope` frames, oldest first.
    pub frames: Vec<Vec<u8>>,
    /// The sequence number to ask after next.
    pub next: u64,
    /// Whether more follows.
    pub more: bool,
}

impl Wire for SyncPage {
    const NAME: &'static str = "sync page";
    const MAX_LEN: usize = MAX_SYNC_PAGE_LEN;
}

/// Encodes `value` as a frame: [`WIRE_VERSION`], then the bincode encoding.
///
/// Fails with [`Error::TooLarge`] if the frame would exceed [`MAX_FRAME_LEN`]: we never emit what
/// a peer must refuse.
pub fn encode<T: Wire>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    out.push(WIRE_VERSION);
    out.extend_from_slice(&raw(value));
    if out.len() > T::MAX_LEN {
        return Err(Error::TooLarge {
            what: T::NAME,
            len: out.len(),
            max: T::MAX_LEN,
        });
    }
    Ok(out)
}

/// Decodes a frame made by [`encode`]. Refuses, with a typed error and never a panic: frames over
/// the type's limit ([`MAX_FRAME_LEN`] unless the type says otherwise; checked before decoding
/// anything), another wire version, unknown enum tags, truncated input, invalid values and
/// trailing bytes.
pub fn decode<T: Wire>(bytes: &[u8]) -> Result<T> {
    if bytes.len() > T::MAX_LEN {
        return Err(Error::TooLarge {
            what: T::NAME,
            len: bytes.len(),
            max: T::MAX_LEN,
        });
    }
    let (version, rest) = match bytes.split_first() {
        Some((v, rest)) => (*v, rest),
        None => {
            return Err(Error::Malformed {
                what: T::NAME,
                detail: "empty frame".into(),
            })
        }
    };
    if version != WIRE_VERSION {
        return Err(Error::UnsupportedVersion(version));
    }
    // bincode's own limit, the type's own or the next above it, bounds what a length prefix may
    // make it allocate.
    let decoded = if T::MAX_LEN <= MAX_FRAME_LEN {
        bincode::decode_from_slice::<T, _>(rest, limited_config::<MAX_FRAME_LEN>())
    } else if T::MAX_LEN <= MAX_PIPE_FRAME_LEN {
        bincode::decode_from_slice::<T, _>(rest, limited_config::<MAX_PIPE_FRAME_LEN>())
    } else {
        bincode::decode_from_slice::<T, _>(rest, limited_config::<MAX_SYNC_PAGE_LEN>())
    };
    let (value, read) = decoded.map_err(|e| decode_error(T::NAME, bytes.len(), T::MAX_LEN, e))?;
    if read != rest.len() {
        return Err(Error::Malformed {
            what: T::NAME,
            detail: format!("{} trailing bytes", rest.len() - read),
        });
    }
    Ok(value)
}

fn decode_error(what: &'static str, len: usize, max: usize, e: DecodeError) -> Error {
    match e {
        DecodeError::UnexpectedVariant { .. } => Error::UnknownKind { what },
        DecodeError::LimitExceeded => Error::TooLarge { what, len, max },
        DecodeError::UnexpectedEnd { .. } => Error::Malformed {
            what,
            detail: "truncated".into(),
        },
        other => Error::Malformed {
            what,
            detail: other.to_string(),
        },
    }
}
