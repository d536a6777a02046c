//! Which network addresses jobs may make feederd or a worker contact.
//! Link-local and cloud-metadata addresses are refused unless allowed; loopback
//! and private ranges are allowed unless forbidden.

use std::net::IpAddr;

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(default)]
pub struct NetPolicy {
    pub allow_link_local: bool,
    pub forbid_private: bool,
}

impl NetPolicy {
    /// What both policies allow.
    pub fn strictest(self, other: NetPolicy) -> NetPolicy {
        NetPolicy {
            allow_link_local: self.allow_link_local && other.allow_link_local,
            forbid_private: self.forbid_private || other.forbid_private,
        }
    }

    /// `Err(reason)` when the address may not be contacted.
    pub fn check(&self, ip: IpAddr) -> Result<(), &'static str> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if !self.allow_link_local && is_link_local_or_metadata(ip) {
            return Err("a link-local or cloud-metadata address");
        }
        if self.forbid_private && is_private_or_loopback(ip) {
            return Err("a private or loopback address");
        }
        if ip.is_unspecified() || ip.is_multicast() {
            return Err("an unspecified or multicast address");
        }
        Ok(())
    }
}

fn is_link_local_or_metadata(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4.octets() == [100, 100, 100, 200],
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.segments() == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254]
        }
    }
}

fn is_private_or_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_refuse_metadata_and_allow_private() {
        let policy = NetPolicy::default();
        for bad in [
            "169.254.169.254",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "100.100.100.200",
        ] {
            assert!(policy.check(ip(bad)).is_err(), "{bad}");
        }
        for good in ["127.0.0.1", "10.1.2.3", "192.168.1.1", "8.8.8.8", "::1"] {
            assert!(policy.check(ip(good)).is_ok(), "{good}");
        }
    }

    #[test]
    fn config_can_forbid_private_or_allow_link_local() {
        let strict = NetPolicy {
            forbid_private: true,
            ..Default::default()
        };
        assert!(strict.check(ip("10.0.0.1")).is_err());
        assert!(strict.check(ip("127.0.0.1")).is_err());
        let open = NetPolicy {
            allow_link_local: true,
            ..Default::default()
        };
        assert!(open.check(ip("169.254.169.254")).is_ok());
        let both = open.strictest(strict);
        assert!(both.check(ip("169.254.169.254")).is_err());
        assert!(both.check(ip("10.0.0.1")).is_err());
    }
}
