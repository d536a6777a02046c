//! HTTP clients that refuse forbidden addresses at connect time: every
//! resolved address, every literal IP and every redirect is checked against
//! the [`NetPolicy`], so a hostname cannot smuggle a request to a metadata service.

use nommer_model::netpolicy::NetPolicy;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

struct PolicyResolver(NetPolicy);

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| policy.check(a.ip()).is_ok())
                .collect();
            if allowed.is_empty() && !addrs.is_empty() {
                let reason = policy.check(addrs[0].ip()).err().unwrap_or("forbidden");
                return Err(format!(
                    "{host} resolves to {reason}, which the address policy forbids"
                )
                .into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// `Err(reason)` when the URL names a literal IP the policy forbids.
pub fn check_literal(url: &url::Url, policy: &NetPolicy) -> Result<(), String> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    policy
        .check(ip)
        .map_err(|reason| format!("{} is {reason}, which the address policy forbids", ip))
}

/// Resolve a host now and check every address (used at submit time).
pub async fn check_host(url: &url::Url, policy: &NetPolicy) -> Result<(), String> {
    check_literal(url, policy)?;
    let Some(url::Host::Domain(host)) = url.host() else {
        return Ok(());
    };
    let Ok(addrs) =
        tokio::net::lookup_host((host, url.port_or_known_default().unwrap_or(80))).await
    else {
        return Ok(()); // unresolvable here; checked again at connect time
    };
    for addr in addrs {
        policy.check(addr.ip()).map_err(|reason| {
            format!("{host} resolves to {reason}, which the address policy forbids")
        })?;
    }
    Ok(())
}

pub fn client(policy: NetPolicy, timeout: Option<Duration>, user_agent: &str) -> reqwest::Client {
    client_with_connect_timeout(policy, timeout, Duration::from_secs(10), user_agent)
}

pub fn client_with_connect_timeout(
    policy: NetPolicy,
    timeout: Option<Duration>,
    connect_timeout: Duration,
    user_agent: &str,
) -> reqwest::Client {
    let redirect_policy = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 5 {
            return attempt.error("too many redirects");
        }
        match check_literal(attempt.url(), &policy) {
            Ok(()) => attempt.follow(),
            Err(reason) => attempt.error(reason),
        }
    });
    let mut builder = reqwest::Client::builder()
        .dns_resolver(Arc::new(PolicyResolver(policy)))
        .redirect(redirect_policy)
        .connect_timeout(connect_timeout)
        .user_agent(user_agent);
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    builder.build().expect("build the HTTP client")
}
