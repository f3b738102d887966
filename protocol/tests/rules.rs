//! Property and rule tests: encoding round trips, tamper detection, and who may revoke or burn.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use tim_protocol::{
    decode, encode,
    test_util::{self, burn, key, revoke},
    AccountKey, Ack, Action, Code, Control, Envelope, Message, PipeFrame, Recipient, RoomId, RouteRecord, MAX_BODY_LEN,
    MAX_FRAME_LEN, WIRE_VERSION,
};

/// The send time of the fixture messages (ms).
const SENT_AT: u64 = 1_700_000_000_000;

fn direct(from: &AccountKey, to: &AccountKey, body: &[u8]) -> Message {
    test_util::direct(from, to, body, SENT_AT)
}

fn room_msg(from: &AccountKey, body: &[u8]) -> Message {
    test_util::room_message(from, "general", body, SENT_AT)
}

/// Signs a control message without the signing-side checks, as a malicious peer could:
/// `signer`'s signature over the documented payload, claiming to be `claimed_by` (or `signer`).
fn forge(signer: &AccountKey, action: Action, target: &Message, claimed_by: Option<&AccountKey>) -> Control {
    let unsigned = Control {
        action,
        target: target.header.clone(),
        by: claimed_by.unwrap_or(signer).account_id(),
        at: 1_700_000_001_000,
        signature: [0; 64],
    };
    resign(signer, unsigned)
}

/// Signs `c` with `signer` over the payload layout docs/protocol.md specifies
/// (`tag || bincode((target, by, at))`), bypassing every rule check.
fn resign(signer: &AccountKey, mut c: Control) -> Control {
    use ed25519_dalek::{Signer, SigningKey};
    let tag: &[u8] = match c.action {
        Action::Revoke => b"tim/v1/revoke\0",
        Action::Burn => b"tim/v1/burn\0",
    };
    let cfg = bincode::config::standard().with_fixed_int_encoding();
    let mut payload = tag.to_vec();
    payload.extend(bincode::encode_to_vec((&c.target, &c.by, c.at), cfg).unwrap());
    let sk = SigningKey::from_bytes(&signer.secret_bytes());
    c.signature = sk.sign(&payload).to_bytes();
    c
}

fn code_of<T: std::fmt::Debug>(r: Result<T, tim_protocol::Error>) -> Code {
    r.expect_err("expected an error").code()
}

#[test]
fn sender_may_revoke_direct_and_room() {
    let (alice, bob) = (key(1), key(2));
    let m = direct(&alice, &bob, b"hi");
    assert_eq!(revoke(&alice, &m).verify().unwrap().id(), m.id());
    let r = room_msg(&alice, b"all");
    assert_eq!(revoke(&alice, &r).verify().unwrap().id(), r.id());
}

#[test]
fn recipient_may_burn_direct() {
    let (alice, bob) = (key(1), key(2));
    let m = direct(&alice, &bob, b"secret");
    assert_eq!(burn(&bob, &m).verify().unwrap().id(), m.id());
}

#[test]
fn revoke_by_anyone_but_sender_is_permission_denied() {
    let (alice, bob, mallory) = (key(1), key(2), key(3));
    let m = direct(&alice, &bob, b"hi");
    // Signing side refuses.
    assert_eq!(
        code_of(Control::sign(&bob, Action::Revoke, m.header.clone(), 5)),
        Code::PermissionDenied
    );
    assert_eq!(
        code_of(Control::sign(&mallory, Action::Revoke, m.header.clone(), 5)),
        Code::PermissionDenied
    );
    // Verifying side refuses a correctly signed revoke by the receiver or a stranger.
    for who in [&bob, &mallory] {
        let forged = forge(who, Action::Revoke, &m, None);
        assert_eq!(code_of(forged.verify()), Code::PermissionDenied);
    }
    // Claiming to be alice without alice's key: bad signature.
    let forged = forge(&mallory, Action::Revoke, &m, Some(&alice));
    assert_eq!(code_of(forged.verify()), Code::InvalidSignature);
}

#[test]
fn burn_by_anyone_but_recipient_is_permission_denied() {
    let (alice, bob, mallory) = (key(1), key(2), key(3));
    let m = direct(&alice, &bob, b"hi");
    assert_eq!(
        code_of(Control::sign(&alice, Action::Burn, m.header.clone(), 5)),
        Code::PermissionDenied
    );
    for who in [&alice, &mallory] {
        assert_eq!(
            code_of(forge(who, Action::Burn, &m, None).verify()),
            Code::PermissionDenied
        );
    }
    assert_eq!(
        code_of(forge(&mallory, Action::Burn, &m, Some(&bob)).verify()),
        Code::InvalidSignature
    );
}

#[test]
fn burn_of_room_message_is_bad_parameters() {
    let (alice, bob) = (key(1), key(2));
    let r = room_msg(&alice, b"all");
    assert_eq!(
        code_of(Control::sign(&bob, Action::Burn, r.header.clone(), 5)),
        Code::BadParameters
    );
    assert_eq!(
        code_of(Control::sign(&alice, Action::Burn, r.header.clone(), 5)),
        Code::BadParameters
    );
    assert_eq!(
        code_of(forge(&bob, Action::Burn, &r, None).verify()),
        Code::BadParameters
    );
}

#[test]
fn revoke_with_altered_target_header_is_rejected() {
    let (alice, bob) = (key(1), key(2));
    let m = direct(&alice, &bob, b"hi");
    let mut c = revoke(&alice, &m);
    c.target.header.sent_at += 1;
    assert_eq!(code_of(c.clone().verify()), Code::InvalidSignature);
    // Even re-signed by alice, the target header no longer carries alice's signature.
    assert_eq!(code_of(resign(&alice, c).verify()), Code::InvalidSignature);
}

#[test]
fn known_target_skips_only_the_target_signature_check() {
    let (alice, bob, eve) = (key(1), key(2), key(3));
    let m = direct(&alice, &bob, b"hi");
    let known = m.header.clone();
    let revoke = Control::sign_known(&alice, Action::Revoke, known.clone(), 5)
        .unwrap()
        .into_inner();
    // Same verdict and id as the full check.
    let full = revoke.clone().verify().unwrap();
    let fast = revoke.clone().verify_known(Some(&known)).unwrap();
    assert_eq!(full.id(), fast.id());
    assert_eq!(fast.id(), m.id());
    // The rules and the control signature are still checked.
    assert_eq!(
        code_of(forge(&bob, Action::Revoke, &m, None).verify_known(Some(&known))),
        Code::PermissionDenied
    );
    assert_eq!(
        code_of(forge(&eve, Action::Revoke, &m, Some(&alice)).verify_known(Some(&known))),
        Code::InvalidSignature
    );
    assert_eq!(
        code_of(Control::sign_known(&bob, Action::Revoke, known.clone(), 5)),
        Code::PermissionDenied
    );
    // A carried target that differs from the known header gets the full check.
    let mut altered = resign(&alice, {
        let mut c = revoke.clone();
        c.target.header.sent_at += 1;
        c
    });
    assert_eq!(
        code_of(altered.clone().verify_known(Some(&known))),
        Code::InvalidSignature
    );
    altered.target = known.clone();
    assert_eq!(code_of(altered.verify_known(Some(&known))), Code::InvalidSignature);
}

#[test]
fn message_signature_replayed_as_revoke_or_burn_is_rejected() {
    let (alice, bob) = (key(1), key(2));
    let m = direct(&alice, &bob, b"hi");
    for action in [Action::Revoke, Action::Burn] {
        let by = if action == Action::Revoke { &alice } else { &bob };
        let c = Control {
            action,
            target: m.header.clone(),
            by: by.account_id(),
            at: 5,
            signature: m.header.signature,
        };
        assert_eq!(code_of(c.verify()), Code::InvalidSignature);
    }
    // A revoke signature replayed as a burn (alice is not the recipient of her own message, so
    // use a message alice sent to herself, where she may do both).
    let selfie = direct(&alice, &alice, b"note to self");
    let mut c = revoke(&alice, &selfie);
    c.action = Action::Burn;
    assert_eq!(code_of(c.verify()), Code::InvalidSignature);
}

#[test]
fn body_must_match_header() {
    let (alice, bob) = (key(1), key(2));
    let mut m = direct(&alice, &bob, b"hello");
    m.body = b"hellO".to_vec();
    assert_eq!(code_of(m.clone().verify()), Code::BodyMismatch);
    m.body = b"hello!".to_vec();
    assert_eq!(code_of(m.verify()), Code::BodyMismatch);
}

#[test]
fn oversized_body_is_too_large() {
    let (alice, bob) = (key(1), key(2));
    let big = vec![0u8; MAX_BODY_LEN + 1];
    let r = Message::sign(&alice, Recipient::Account(bob.account_id()), big, 1, None);
    assert_eq!(code_of(r), Code::TooLarge);
    assert!(Message::sign(
        &alice,
        Recipient::Account(bob.account_id()),
        vec![0; MAX_BODY_LEN],
        1,
        None
    )
    .is_ok());
}

#[test]
fn burn_after_read_only_on_direct() {
    let alice = key(1);
    let r = Message::sign(
        &alice,
        Recipient::Room(RoomId::new("r").unwrap()),
        b"x".to_vec(),
        1,
        Some(10),
    );
    assert_eq!(code_of(r), Code::BadParameters);
}

#[test]
fn decode_refuses_bad_frames_with_typed_errors() {
    let (alice, bob) = (key(1), key(2));
    let frame = encode(&Envelope::Message(direct(&alice, &bob, b"x"))).unwrap();
    assert_eq!(frame[0], WIRE_VERSION);
    // unknown wire version
    let mut v = frame.clone();
    v[0] = 99;
    assert_eq!(code_of(decode::<Envelope>(&v)), Code::UnsupportedVersion);
    // unknown envelope kind (fixint enum tag is a little-endian u32 after the version byte)
    let mut k = frame.clone();
    k[1] = 99;
    assert!(matches!(
        decode::<Envelope>(&k),
        Err(tim_protocol::Error::UnknownKind { .. })
    ));
    // trailing bytes
    let mut t = frame.clone();
    t.push(0);
    assert_eq!(code_of(decode::<Envelope>(&t)), Code::Malformed);
    // truncated
    assert_eq!(code_of(decode::<Envelope>(&frame[..frame.len() - 1])), Code::Malformed);
    assert_eq!(code_of(decode::<Envelope>(&[])), Code::Malformed);
    // oversized, refused before decoding
    let huge = vec![WIRE_VERSION; MAX_FRAME_LEN + 1];
    assert_eq!(code_of(decode::<Envelope>(&huge)), Code::TooLarge);
    // a length prefix claiming far more than the limit
    let mut claim = vec![WIRE_VERSION, 0, 0, 0, 0];
    claim.extend_from_slice(&[0xff; 8]);
    assert!(decode::<Envelope>(&claim).is_err());
}

#[test]
fn pipe_frames_carry_the_largest_envelope_and_refuse_more() {
    let (alice, bob) = (key(1), key(2));
    let envelope = encode(&Envelope::Message(direct(&alice, &bob, &vec![7u8; MAX_BODY_LEN]))).unwrap();
    let request = PipeFrame::Request {
        id: u64::MAX,
        envelope: envelope.clone(),
    };
    let bytes = encode(&request).unwrap();
    assert_eq!(decode::<PipeFrame>(&bytes).unwrap(), request);
    let answer = PipeFrame::Answer {
        id: 3,
        ack: Ack::Refused { code: 4105 },
    };
    assert_eq!(decode::<PipeFrame>(&encode(&answer).unwrap()).unwrap(), answer);
    // Exactly the largest envelope fits; one byte more does not.
    let full = PipeFrame::Request {
        id: 1,
        envelope: vec![0; MAX_FRAME_LEN],
    };
    assert_eq!(decode::<PipeFrame>(&encode(&full).unwrap()).unwrap(), full);
    let over = PipeFrame::Request {
        id: 1,
        envelope: vec![0; MAX_FRAME_LEN + 1],
    };
    assert_eq!(code_of(encode(&over)), Code::TooLarge);
    let mut forged = bytes[..13].to_vec();
    forged.extend_from_slice(&((MAX_FRAME_LEN as u64) * 4).to_le_bytes());
    forged.extend_from_slice(&[0; 64]);
    assert!(decode::<PipeFrame>(&forged).is_err());
    assert_eq!(
        code_of(decode::<PipeFrame>(&vec![WIRE_VERSION; MAX_FRAME_LEN + 64])),
        Code::TooLarge
    );
}

#[test]
fn unknown_header_version_is_typed() {
    let (alice, bob) = (key(1), key(2));
    let mut m = direct(&alice, &bob, b"x");
    m.header.header.version = 2;
    assert_eq!(code_of(m.verify()), Code::UnsupportedVersion);
}

#[test]
fn route_records() {
    let alice = key(1);
    let r = RouteRecord::sign(&alice, vec![1, 2, 3], vec![vec![4, 5]], 1, 1000, None).unwrap();
    assert!(r.verify(999).is_ok());
    assert_eq!(code_of(r.verify(1000)), Code::Expired);
    let mut forged = r.clone();
    forged.expires_at = 5000;
    assert_eq!(code_of(forged.verify(999)), Code::InvalidSignature);
    let mut replayed = r.clone();
    replayed.seq = 2;
    assert_eq!(code_of(replayed.verify(999)), Code::InvalidSignature);
    let mut moved = r.clone();
    moved.addrs = vec![vec![6]];
    assert_eq!(code_of(moved.verify(999)), Code::InvalidSignature);
    let mut stolen = r;
    stolen.account = key(2).account_id();
    assert_eq!(code_of(stolen.verify(999)), Code::InvalidSignature);
    let bytes = encode(&RouteRecord::sign(&alice, vec![9; 38], vec![], 1, 7, None).unwrap()).unwrap();
    assert_eq!(
        code_of(RouteRecord::sign(&alice, vec![9; 38], vec![vec![1]; 17], 1, 7, None)),
        Code::BadParameters
    );
    assert!(decode::<RouteRecord>(&bytes).is_ok());
}

fn arb_message() -> impl Strategy<Value = Message> {
    (
        any::<u8>(),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..300),
        any::<u64>(),
        any::<[u8; 16]>(),
        proptest::option::of(1u32..100_000),
        "[a-z0-9._-]{1,64}",
    )
        .prop_map(|(seed, is_room, body, sent_at, nonce, burn, room)| {
            let from = key(seed);
            if is_room {
                let to = Recipient::Room(RoomId::new(room).unwrap());
                Message::sign_with_nonce(&from, to, body, sent_at, None, nonce)
                    .unwrap()
                    .into_inner()
            } else {
                let to = Recipient::Account(key(seed.wrapping_add(1)).account_id());
                Message::sign_with_nonce(&from, to, body, sent_at, burn, nonce)
                    .unwrap()
                    .into_inner()
            }
        })
}

fn arb_control() -> impl Strategy<Value = Control> {
    (arb_message(), any::<bool>(), any::<u64>()).prop_map(|(m, revoke, at)| {
        let is_room = matches!(m.head().to, Recipient::Room(_));
        if revoke || is_room {
            // The sender may always revoke. Recover the sender's key from the seed used above.
            let seed = (0..=255u8).find(|s| key(*s).account_id() == m.head().from).unwrap();
            Control::sign(&key(seed), Action::Revoke, m.header, at)
                .unwrap()
                .into_inner()
        } else {
            let Recipient::Account(to) = m.head().to else {
                unreachable!()
            };
            let seed = (0..=255u8).find(|s| key(*s).account_id() == to).unwrap();
            Control::sign(&key(seed), Action::Burn, m.header, at)
                .unwrap()
                .into_inner()
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, rng_seed: proptest::test_runner::RngSeed::Fixed(0x7117), ..ProptestConfig::default() })]

    #[test]
    fn message_round_trip_is_byte_identical(m in arb_message()) {
        let bytes = encode(&m).unwrap();
        let back: Message = decode(&bytes).unwrap();
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(encode(&back).unwrap(), bytes);
        prop_assert_eq!(back.verify().unwrap().id(), m.id());
    }

    #[test]
    fn control_round_trip_is_byte_identical(c in arb_control()) {
        let env = Envelope::Control(c);
        let bytes = encode(&env).unwrap();
        let back: Envelope = decode(&bytes).unwrap();
        prop_assert_eq!(&back, &env);
        prop_assert_eq!(encode(&back).unwrap(), bytes);
    }

    #[test]
    fn flipping_any_byte_of_a_message_fails(m in arb_message(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut bytes = encode(&m).unwrap();
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        let outcome = decode::<Message>(&bytes).and_then(|m| m.verify());
        prop_assert!(outcome.is_err(), "flip at {} still verified", i);
    }

    #[test]
    fn flipping_any_byte_of_a_control_fails(c in arb_control(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut bytes = encode(&c).unwrap();
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        let outcome = decode::<Control>(&bytes).and_then(|c| c.verify());
        prop_assert!(outcome.is_err(), "flip at {} still verified", i);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_reencode_identically(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut framed = vec![WIRE_VERSION];
        framed.extend_from_slice(&bytes);
        if let Ok(env) = decode::<Envelope>(&framed) {
            prop_assert_eq!(encode(&env).unwrap(), framed);
        }
    }
}
