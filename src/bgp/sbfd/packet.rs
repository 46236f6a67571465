//! The BFD control packet (RFC 5880 section 4.1) as S-BFD uses it (RFC 7880):
//! the 24-byte mandatory section, no authentication.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
//! |                       My Discriminator                        |
//! |                      Your Discriminator                       |
//! |                    Desired Min TX Interval                    |
//! |                   Required Min RX Interval                    |
//! |                 Required Min Echo RX Interval                 |
//! ```

/// The S-BFD reflector's UDP port (RFC 7881 section 3).
pub const SBFD_PORT: u16 = 7784;
/// The range S-BFD initiators take their UDP source port from (RFC 7881 section 3).
pub const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;
/// Length of the mandatory section, the only one sent here.
pub const LEN: usize = 24;
const VERSION: u8 = 1;

/// A session state as carried in the Sta field (RFC 5880 section 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// 0: administratively down (a reflector refusing this initiator).
    AdminDown,
    /// 1.
    Down,
    /// 2.
    Init,
    /// 3: what a reflector answers when it accepts the probe.
    Up,
}

impl State {
    fn bits(self) -> u8 {
        match self {
            State::AdminDown => 0,
            State::Down => 1,
            State::Init => 2,
            State::Up => 3,
        }
    }

    fn from_bits(b: u8) -> State {
        match b & 3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }
}

/// A BFD control packet (mandatory section).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Control {
    /// Diagnostic code (5 bits).
    pub diag: u8,
    /// The sender's session state.
    pub state: State,
    /// Poll (P) bit.
    pub poll: bool,
    /// Final (F) bit.
    pub final_: bool,
    /// Detect Mult: the sender's detection multiplier (never 0).
    pub detect_mult: u8,
    /// My Discriminator: the sender's (never 0).
    pub my_discriminator: u32,
    /// Your Discriminator: for S-BFD, the reflector's.
    pub your_discriminator: u32,
    /// Desired Min TX Interval, microseconds.
    pub desired_min_tx_us: u32,
    /// Required Min RX Interval, microseconds.
    pub required_min_rx_us: u32,
    /// Required Min Echo RX Interval, microseconds (0: no echo).
    pub required_min_echo_rx_us: u32,
}

/// Why a received datagram is not a BFD control packet this initiator takes
/// (the checks of RFC 5880 section 6.8.6 that apply to S-BFD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Shorter than the 24-byte mandatory section.
    #[error("{len} bytes: a BFD control packet has at least {LEN}")]
    Short {
        /// Bytes received.
        len: usize,
    },
    /// Not version 1.
    #[error("BFD version {version}: only version 1 exists")]
    Version {
        /// The version field.
        version: u8,
    },
    /// The Length field is below 24 or beyond the datagram.
    #[error("Length field {length} with {len} bytes received")]
    Length {
        /// The Length field.
        length: u8,
        /// Bytes received.
        len: usize,
    },
    /// Authentication present: S-BFD here runs without it (the A bit is set).
    #[error("the packet is authenticated (A bit): this initiator runs S-BFD without authentication")]
    Authenticated,
    /// The Multipoint bit is set, the Detect Mult or My Discriminator is 0.
    #[error("invalid field: {field} (RFC 5880 section 6.8.6)")]
    Invalid {
        /// Which field.
        field: &'static str,
    },
}

impl Control {
    /// The bytes on the wire (24, no authentication).
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = (VERSION << 5) | (self.diag & 0x1f);
        b[1] = (self.state.bits() << 6) | (u8::from(self.poll) << 5) | (u8::from(self.final_) << 4);
        b[2] = self.detect_mult;
        b[3] = LEN as u8;
        b[4..8].copy_from_slice(&self.my_discriminator.to_be_bytes());
        b[8..12].copy_from_slice(&self.your_discriminator.to_be_bytes());
        b[12..16].copy_from_slice(&self.desired_min_tx_us.to_be_bytes());
        b[16..20].copy_from_slice(&self.required_min_rx_us.to_be_bytes());
        b[20..24].copy_from_slice(&self.required_min_echo_rx_us.to_be_bytes());
        b
    }

    /// Decodes and validates a received packet.
    ///
    /// # Errors
    /// [`DecodeError`]: too short, another version, a bad length, an
    /// authentication section, the M bit, a zero Detect Mult or My
    /// Discriminator.
    pub fn decode(bytes: &[u8]) -> Result<Control, DecodeError> {
        let Some(b) = bytes.first_chunk::<LEN>() else { return Err(DecodeError::Short { len: bytes.len() }) };
        let word = |i: usize| b.get(i..i + 4).and_then(|w| <[u8; 4]>::try_from(w).ok()).map_or(0, u32::from_be_bytes);
        let version = b[0] >> 5;
        if version != VERSION {
            return Err(DecodeError::Version { version });
        }
        if usize::from(b[3]) < LEN || usize::from(b[3]) > bytes.len() {
            return Err(DecodeError::Length { length: b[3], len: bytes.len() });
        }
        if b[1] & 0x04 != 0 {
            return Err(DecodeError::Authenticated);
        }
        if b[1] & 0x01 != 0 {
            return Err(DecodeError::Invalid { field: "Multipoint (M) bit set" });
        }
        if b[2] == 0 {
            return Err(DecodeError::Invalid { field: "Detect Mult is 0" });
        }
        if word(4) == 0 {
            return Err(DecodeError::Invalid { field: "My Discriminator is 0" });
        }
        Ok(Control {
            diag: b[0] & 0x1f,
            state: State::from_bits(b[1] >> 6),
            poll: b[1] & 0x20 != 0,
            final_: b[1] & 0x10 != 0,
            detect_mult: b[2],
            my_discriminator: word(4),
            your_discriminator: word(8),
            desired_min_tx_us: word(12),
            required_min_rx_us: word(16),
            required_min_echo_rx_us: word(20),
        })
    }

    /// What an S-BFD reflector answers to this probe (RFC 7880 section 7.3):
    /// the discriminators swapped, state Up, its own timers.
    pub fn reflected(&self, reflector_min_rx_us: u32) -> Control {
        Control {
            diag: 0,
            state: State::Up,
            poll: false,
            final_: self.poll,
            detect_mult: self.detect_mult,
            my_discriminator: self.your_discriminator,
            your_discriminator: self.my_discriminator,
            desired_min_tx_us: self.desired_min_tx_us,
            required_min_rx_us: reflector_min_rx_us,
            required_min_echo_rx_us: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe() -> Control {
        Control {
            diag: 0,
            state: State::Down,
            poll: false,
            final_: false,
            detect_mult: 3,
            my_discriminator: 0x0102_0304,
            your_discriminator: 0xc000_0201,
            desired_min_tx_us: 10_000,
            required_min_rx_us: 10_000,
            required_min_echo_rx_us: 0,
        }
    }

    #[test]
    fn encodes_the_rfc_5880_layout() {
        // Written from the figure of RFC 5880 section 4.1: version 1 in the
        // top 3 bits (0x20), Sta=Down (1) in the top 2 bits of byte 1 (0x40).
        let want: [u8; 24] =
            [0x20, 0x40, 3, 24, 1, 2, 3, 4, 0xc0, 0, 2, 1, 0, 0, 0x27, 0x10, 0, 0, 0x27, 0x10, 0, 0, 0, 0];
        assert_eq!(probe().encode(), want);
        let up = Control { state: State::Up, poll: true, diag: 1, ..probe() };
        assert_eq!(&up.encode()[..2], &[0x21, 0xe0]);
    }

    #[test]
    fn round_trips_every_state_and_flag() {
        for state in [State::AdminDown, State::Down, State::Init, State::Up] {
            for (poll, final_) in [(false, false), (true, false), (false, true)] {
                let c = Control { state, poll, final_, diag: 7, ..probe() };
                assert_eq!(Control::decode(&c.encode()), Ok(c));
            }
        }
    }

    #[test]
    fn refuses_what_rfc_5880_discards() {
        let ok = probe().encode();
        let with = |i: usize, v: u8| {
            let mut b = ok;
            b[i] = v;
            b
        };
        assert_eq!(Control::decode(&ok[..23]), Err(DecodeError::Short { len: 23 }));
        assert_eq!(Control::decode(&with(0, 0x40)), Err(DecodeError::Version { version: 2 }));
        assert_eq!(Control::decode(&with(3, 23)), Err(DecodeError::Length { length: 23, len: 24 }));
        assert_eq!(Control::decode(&with(3, 30)), Err(DecodeError::Length { length: 30, len: 24 }));
        assert_eq!(Control::decode(&with(1, 0x44)), Err(DecodeError::Authenticated));
        assert!(matches!(Control::decode(&with(1, 0x41)), Err(DecodeError::Invalid { .. })));
        assert!(matches!(Control::decode(&with(2, 0)), Err(DecodeError::Invalid { .. })));
        let mut zero = ok;
        zero[4..8].fill(0);
        assert!(matches!(Control::decode(&zero), Err(DecodeError::Invalid { .. })));
    }

    #[test]
    fn a_reflector_swaps_the_discriminators_and_answers_up() {
        let r = probe().reflected(1_000);
        assert_eq!((r.my_discriminator, r.your_discriminator), (0xc000_0201, 0x0102_0304));
        assert_eq!((r.state, r.required_min_rx_us), (State::Up, 1_000));
        assert_eq!(Control::decode(&r.encode()), Ok(r));
    }
}
