//! Pipe framing: an unsigned-varint length prefix, then that many bytes. The decoder refuses a
//! prefix over its limit as soon as it is read, and never reserves room for bytes that have not
//! arrived: a peer that sends a large prefix and stops costs the receiver only what it sent.

use std::io;

use asynchronous_codec::{Bytes, BytesMut, Decoder, Encoder};
use tim_protocol::{PipeFrame, Wire};

/// The largest frame a node writes on a pipe, and reads as a pipe's receiver: a request carrying
/// the largest envelope ([`PipeFrame::MAX_LEN`]).
pub(crate) const MAX_REQUEST_FRAME: usize = PipeFrame::MAX_LEN;
/// The largest frame a node reads on its own outbound pipe, where only answers come: the
/// version byte, the variant tag, the id and the largest `Ack` (tag and code), with room to spare.
pub(crate) const MAX_ANSWER_FRAME: usize = 64;
/// Longest unsigned varint for a length up to `usize::MAX` on 64 bits.
const MAX_PREFIX: usize = 10;

/// Length-prefixed frames, at most `read_max` bytes read and `write_max` written.
#[derive(Debug, Clone)]
pub(crate) struct FrameCodec {
    read_max: usize,
    write_max: usize,
    /// The length of the frame being read, once its prefix is in.
    want: Option<usize>,
}

impl FrameCodec {
    pub(crate) fn new(read_max: usize, write_max: usize) -> Self {
        FrameCodec {
            read_max,
            write_max,
            want: None,
        }
    }
}

fn too_large(what: &str, len: usize, max: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{what} frame of {len} bytes over the limit of {max}"),
    )
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<BytesMut>> {
        let want = match self.want {
            Some(n) => n,
            None => match unsigned_varint::decode::usize(src) {
                Ok((n, rest)) => {
                    let prefix = src.len() - rest.len();
                    if n > self.read_max {
                        return Err(too_large("inbound", n, self.read_max));
                    }
                    let _ = src.split_to(prefix);
                    self.want = Some(n);
                    n
                }
                Err(unsigned_varint::decode::Error::Insufficient) if src.len() < MAX_PREFIX => return Ok(None),
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            },
        };
        if src.len() < want {
            // No `reserve`: the buffer grows only with what actually arrives.
            return Ok(None);
        }
        self.want = None;
        Ok(Some(src.split_to(want)))
    }
}

impl Encoder for FrameCodec {
    type Item<'a> = Bytes;
    type Error = io::Error;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> io::Result<()> {
        if item.len() > self.write_max {
            return Err(too_large("outbound", item.len(), self.write_max));
        }
        let mut prefix = unsigned_varint::encode::usize_buffer();
        dst.extend_from_slice(unsigned_varint::encode::usize(item.len(), &mut prefix));
        dst.extend_from_slice(&item);
        Ok(())
    }
}

/// Whether `buffered` holds the start of a frame (bytes of a prefix or of a body still being read).
pub(crate) fn in_frame(codec: &FrameCodec, buffered: usize) -> bool {
    codec.want.is_some() || buffered > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixed(len: usize, body: &[u8]) -> BytesMut {
        let mut buf = unsigned_varint::encode::usize_buffer();
        let mut out = BytesMut::from(unsigned_varint::encode::usize(len, &mut buf));
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn frames_round_trip_and_split_anywhere() {
        let mut codec = FrameCodec::new(MAX_REQUEST_FRAME, MAX_REQUEST_FRAME);
        let mut wire = BytesMut::new();
        codec.encode(Bytes::from_static(b"hello"), &mut wire).unwrap();
        codec.encode(Bytes::from(vec![7u8; 300]), &mut wire).unwrap();
        let mut src = BytesMut::new();
        let mut got = Vec::new();
        for byte in wire {
            src.extend_from_slice(&[byte]);
            while let Some(f) = codec.decode(&mut src).unwrap() {
                got.push(f.to_vec());
            }
        }
        assert_eq!(got, vec![b"hello".to_vec(), vec![7u8; 300]]);
        assert!(!in_frame(&codec, src.len()));
    }

    #[test]
    fn an_oversized_prefix_is_refused_before_anything_is_buffered() {
        let mut codec = FrameCodec::new(MAX_REQUEST_FRAME, MAX_REQUEST_FRAME);
        let mut src = prefixed(MAX_REQUEST_FRAME + 1, b"");
        let before = src.capacity();
        assert!(codec.decode(&mut src).is_err());
        assert_eq!(src.capacity(), before, "nothing was reserved for the refused frame");
    }

    #[test]
    fn a_large_prefix_reserves_nothing_for_bytes_not_received() {
        // A legal prefix for the largest frame, and 5 bytes of it.
        let mut codec = FrameCodec::new(MAX_REQUEST_FRAME, MAX_REQUEST_FRAME);
        let mut src = prefixed(MAX_REQUEST_FRAME, b"12345");
        let before = src.capacity();
        assert!(codec.decode(&mut src).unwrap().is_none());
        assert!(
            src.capacity() <= before,
            "the decoder reserved room for bytes not received"
        );
        assert!(src.capacity() < 1024);
        assert!(in_frame(&codec, src.len()));
    }

    #[test]
    fn an_answer_pipe_refuses_request_sized_frames_and_bad_prefixes() {
        let mut codec = FrameCodec::new(MAX_ANSWER_FRAME, MAX_REQUEST_FRAME);
        assert!(codec.decode(&mut prefixed(MAX_ANSWER_FRAME + 1, b"")).is_err());
        // Eleven continuation bytes are no varint.
        let mut src = BytesMut::from(&[0x80u8; 11][..]);
        assert!(FrameCodec::new(64, 64).decode(&mut src).is_err());
        // Nor does the encoder write over its limit.
        let mut out = BytesMut::new();
        assert!(FrameCodec::new(64, 4)
            .encode(Bytes::from_static(b"12345"), &mut out)
            .is_err());
    }
}
