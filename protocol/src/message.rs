//! Messages: a header signed by the sender, and a body bound to it by length and SHA-256.

use bincode::{Decode, Encode};
use sha2::{Digest, Sha256};

use crate::{codec::raw, tag, AccountId, AccountKey, Error, MessageId, Result, RoomId, Verified};

/// The header version this crate writes and accepts.
pub const PROTOCOL_VERSION: u8 = 1;

/// The largest message body, in bytes.
pub const MAX_BODY_LEN: usize = 64 * 1024;

/// What a bad header signature is reported as (`Error::InvalidSignature`).
pub(crate) const HEADER_WHAT: &str = "message header";

/// Who a message is for. The variant is the message's kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
pub enum Recipient {
    /// A direct (1:1) message to one account.
    Account(AccountId),
    /// A room (group) message, to every member of the room.
    Room(RoomId),
}

/// The kind of a message: direct (tim msType 2) or room (msType 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// 1:1.
    Direct,
    /// Group.
    Room,
}

/// What the sender signs. Its digest is the message id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Header {
    /// Header version; [`PROTOCOL_VERSION`].
    pub version: u8,
    /// The recipient account or room; also the message kind.
    pub to: Recipient,
    /// The sender.
    pub from: AccountId,
    /// Send time, milliseconds since the Unix epoch, by the sender's clock.
    pub sent_at: u64,
    /// Random, so two equal messages sent in the same millisecond have distinct ids.
    pub nonce: [u8; 16],
    /// Length of the body in bytes.
    pub body_len: u32,
    /// SHA-256 of the body.
    pub body_hash: [u8; 32],
    /// If set (direct messages only), the receiver burns the message this many seconds after
    /// it was read.
    pub burn_after_read: Option<u32>,
}

impl Header {
    /// Direct or room.
    pub fn kind(&self) -> Kind {
        match self.to {
            Recipient::Account(_) => Kind::Direct,
            Recipient::Room(_) => Kind::Room,
        }
    }

    /// The message id: SHA-256 of exactly the bytes the sender signs
    /// (`tag::MESSAGE || bincode(header)`).
    pub fn id(&self) -> MessageId {
        let mut h = Sha256::new();
        h.update(tag::MESSAGE);
        h.update(raw(self));
        MessageId::from_bytes(h.finalize().into())
    }

    /// The rules on header fields alone (no signature): version, size, burn only on direct.
    fn check_fields(&self) -> Result<()> {
        if self.version != PROTOCOL_VERSION {
            return Err(Error::UnsupportedVersion(self.version));
        }
        if self.body_len as usize > MAX_BODY_LEN {
            return Err(Error::TooLarge {
                what: "body",
                len: self.body_len as usize,
                max: MAX_BODY_LEN,
            });
        }
        if self.burn_after_read.is_some() && self.kind() == Kind::Room {
            return Err(Error::BadParameters("room messages cannot burn after reading".into()));
        }
        Ok(())
    }
}

/// A header with the sender's signature over `tag::MESSAGE || bincode(header)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
pub struct SignedHeader {
    /// The header.
    pub header: Header,
    /// ed25519 signature by `header.from`.
    pub signature: [u8; 64],
}

impl SignedHeader {
    /// The id of the message this header belongs to.
    pub fn id(&self) -> MessageId {
        self.header.id()
    }

    /// Checks the header's fields and the sender's signature; returns the message id.
    pub fn verify(&self) -> Result<MessageId> {
        self.header.check_fields()?;
        self.header
            .from
            .verify_tagged(HEADER_WHAT, tag::MESSAGE, &raw(&self.header), &self.signature)?;
        Ok(self.id())
    }
}

/// A message: signed header and body.
///
/// Its decoding (written out below, the same bytes as the derived one) refuses a body length over
/// the bytes present before allocating it, so a short envelope cannot make the receiver reserve
/// the frame limit.
#[derive(Debug, Clone, PartialEq, Eq, Encode)]
pub struct Message {
    /// The signed header.
    pub header: SignedHeader,
    /// The content, opaque to the protocol (UTF-8 text for the web page and CLI).
    pub body: Vec<u8>,
}

impl<Ctx> Decode<Ctx> for Message {
    fn decode<D: bincode::de::Decoder<Context = Ctx>>(
        decoder: &mut D,
    ) -> std::result::Result<Self, bincode::error::DecodeError> {
        Ok(Message {
            header: SignedHeader::decode(decoder)?,
            body: crate::codec::bytes_present(decoder)?,
        })
    }
}
bincode::impl_borrow_decode!(Message);

impl Message {
    /// Signs a new message with a random nonce.
    pub fn sign(
        key: &AccountKey,
        to: Recipient,
        body: Vec<u8>,
        sent_at: u64,
        burn_after_read: Option<u32>,
    ) -> Result<Verified<Message>> {
        Self::sign_with_nonce(key, to, body, sent_at, burn_after_read, rand::random())
    }

    /// Signs a new message with the given nonce (deterministic, for tests and benches).
    pub fn sign_with_nonce(
        key: &AccountKey,
        to: Recipient,
        body: Vec<u8>,
        sent_at: u64,
        burn_after_read: Option<u32>,
        nonce: [u8; 16],
    ) -> Result<Verified<Message>> {
        if body.len() > MAX_BODY_LEN {
            return Err(Error::TooLarge {
                what: "body",
                len: body.len(),
                max: MAX_BODY_LEN,
            });
        }
        let header = Header {
            version: PROTOCOL_VERSION,
            to,
            from: key.account_id(),
            sent_at,
            nonce,
            body_len: body.len() as u32,
            body_hash: Sha256::digest(&body).into(),
            burn_after_read,
        };
        header.check_fields()?;
        let signature = key.sign_tagged(tag::MESSAGE, &raw(&header));
        let id = header.id();
        Ok(Verified::new(
            Message {
                header: SignedHeader { header, signature },
                body,
            },
            id,
        ))
    }

    /// The message id.
    pub fn id(&self) -> MessageId {
        self.header.id()
    }

    /// Convenience accessor for the unsigned header fields.
    pub fn head(&self) -> &Header {
        &self.header.header
    }

    /// Verifies the header (fields and signature) and that the body matches it.
    /// [`crate::batch::verify_messages`] is the same for many messages, batching the signatures.
    pub fn verify(self) -> Result<Verified<Message>> {
        self.check_unsigned()?;
        let id = self.header.verify()?;
        Ok(Verified::new(self, id))
    }

    /// Every check of [`Message::verify`] before the signature, in its order: the body against
    /// the header, then the header's fields.
    pub(crate) fn check_unsigned(&self) -> Result<()> {
        let h = &self.header.header;
        if self.body.len() != h.body_len as usize || <[u8; 32]>::from(Sha256::digest(&self.body)) != h.body_hash {
            // Report an oversized claim as such before the mismatch.
            h.check_fields()?;
            return Err(Error::BodyMismatch);
        }
        h.check_fields()
    }
}
