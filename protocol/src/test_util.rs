//! Fixtures shared by the workspace's tests and benches (feature `test-util`): deterministic keys
//! and signed messages. Never for production use: keys come from fixed seeds.
#![allow(clippy::expect_used)]

use crate::{AccountKey, Action, Control, Message, Recipient, RoomId};

/// The account key with secret `[seed; 32]`.
pub fn key(seed: u8) -> AccountKey {
    AccountKey::from_secret_bytes(&[seed; 32])
}

/// A direct message from `from` to `to`, sent at `sent_at` (ms), with a random nonce.
pub fn direct(from: &AccountKey, to: &AccountKey, body: &[u8], sent_at: u64) -> Message {
    Message::sign(from, Recipient::Account(to.account_id()), body.to_vec(), sent_at, None)
        .expect("a fixture message within the limits")
        .into_inner()
}

/// A message from `from` to the room `room`, sent at `sent_at` (ms), with a random nonce.
pub fn room_message(from: &AccountKey, room: &str, body: &[u8], sent_at: u64) -> Message {
    let room = RoomId::new(room).expect("a fixture room id");
    Message::sign(from, Recipient::Room(room), body.to_vec(), sent_at, None)
        .expect("a fixture message within the limits")
        .into_inner()
}

/// `by`'s revoke of `target`, one millisecond after it was sent.
pub fn revoke(by: &AccountKey, target: &Message) -> Control {
    control(by, Action::Revoke, target)
}

/// `by`'s burn of `target`, one millisecond after it was sent.
pub fn burn(by: &AccountKey, target: &Message) -> Control {
    control(by, Action::Burn, target)
}

fn control(by: &AccountKey, action: Action, target: &Message) -> Control {
    Control::sign(by, action, target.header.clone(), target.head().sent_at + 1)
        .expect("a fixture control message the rules allow")
        .into_inner()
}

/// How many mutation cases a decoder test runs: `TIM_MUTATION_CASES`, else 100,000.
pub fn mutation_cases() -> usize {
    std::env::var("TIM_MUTATION_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// xorshift64*: a tiny deterministic generator for mutation tests. Seeded with a fixed value,
/// every run tries the same cases, so a failure reproduces.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n`; `n > 0`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    /// One of `items`, uniformly; `items` is not empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}
