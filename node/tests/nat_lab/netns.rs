//! The lab's network: Linux network namespaces, veth pairs, a bridge and nftables masquerade,
//! created by [`Lab::create`] and removed when the [`Lab`] drops. No namespace has a link to the
//! host's interfaces, so nothing sent in the lab can leave it.
//!
//! ```text
//!                 "internet" (203.0.113.0/24, bridge in the inet namespace)
//!                 relay/bootstrap nodes 203.0.113.1 and .2
//!                 |                                   |
//!   router r1: wan 203.0.113.11, masquerade   router r2: wan 203.0.113.12, masquerade
//!                 |                                   |
//!   home h1: 10.1.0.2 (default via 10.1.0.1)   home h2: 10.2.0.2 (default via 10.2.0.1)
//! ```

use std::process::Command;

/// The relays' addresses on the lab's "internet".
pub(crate) const RELAY_IPS: [&str; 2] = ["203.0.113.1", "203.0.113.2"];

/// The namespaces of one lab; removed on drop.
pub(crate) struct Lab {
    pub(crate) inet: String,
    pub(crate) homes: [String; 2],
    routers: [String; 2],
}

/// Runs `program args`, failing with its stderr.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program} could not run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `program args` inside namespace `ns`.
pub(crate) fn run_in(ns: &str, program: &str, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    run("ip", &all)
}

impl Lab {
    /// Builds the lab, or says why it cannot be built here (not root, no `ip` or `nft`, no
    /// namespaces in this container).
    pub(crate) fn create() -> Result<Lab, String> {
        let tag = std::process::id();
        let name = |role: &str| format!("timlab-{role}-{tag}");
        let lab = Lab {
            inet: name("inet"),
            homes: [name("h1"), name("h2")],
            routers: [name("r1"), name("r2")],
        };
        run("nft", &["--version"]).map_err(|e| format!("nftables is missing ({e}); .ci/deps installs it"))?;
        // Created first and alone: the one step that tells whether namespaces work here at all.
        run("ip", &["netns", "add", &lab.inet]).map_err(|e| format!("cannot create network namespaces: {e}"))?;
        lab.build()
            .map_err(|e| format!("could not build the lab network: {e}"))?;
        Ok(lab)
    }

    fn namespaces(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.inet).chain(&self.routers).chain(&self.homes)
    }

    fn build(&self) -> Result<(), String> {
        for ns in self.namespaces().skip(1) {
            run("ip", &["netns", "add", ns])?;
        }
        for ns in self.namespaces() {
            run_in(ns, "ip", &["link", "set", "lo", "up"])?;
        }
        let inet = self.inet.as_str();
        run_in(inet, "ip", &["link", "add", "br0", "type", "bridge"])?;
        for ip in RELAY_IPS {
            run_in(inet, "ip", &["addr", "add", &format!("{ip}/24"), "dev", "br0"])?;
        }
        run_in(inet, "ip", &["link", "set", "br0", "up"])?;
        for (i, (router, home)) in self.routers.iter().zip(&self.homes).enumerate() {
            let n = i + 1;
            // The router's WAN side, on the internet's bridge.
            let port = format!("p{n}");
            run_in(
                inet,
                "ip",
                &[
                    "link", "add", &port, "type", "veth", "peer", "name", "wan", "netns", router,
                ],
            )?;
            run_in(inet, "ip", &["link", "set", &port, "master", "br0", "up"])?;
            run_in(
                router,
                "ip",
                &["addr", "add", &format!("203.0.113.{}/24", 10 + n), "dev", "wan"],
            )?;
            run_in(router, "ip", &["link", "set", "wan", "up"])?;
            // The home network behind it.
            run_in(
                router,
                "ip",
                &[
                    "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", home,
                ],
            )?;
            run_in(router, "ip", &["addr", "add", &format!("10.{n}.0.1/24"), "dev", "lan"])?;
            run_in(router, "ip", &["link", "set", "lan", "up"])?;
            run_in(home, "ip", &["addr", "add", &format!("10.{n}.0.2/24"), "dev", "eth0"])?;
            run_in(home, "ip", &["link", "set", "eth0", "up"])?;
            run_in(home, "ip", &["route", "add", "default", "via", &format!("10.{n}.0.1")])?;
            // A home router: forwards, masquerades what leaves by the WAN, and lets in only what
            // answers a connection from inside (conntrack), like a consumer NAT.
            run_in(router, "sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"])?;
            let rules = "table ip nat {\n\
                 chain postrouting { type nat hook postrouting priority srcnat; oifname \"wan\" masquerade; }\n\
                 }\n\
                 table ip filter {\n\
                 chain forward { type filter hook forward priority filter; policy drop;\n\
                 ct state established,related accept;\n\
                 iifname \"lan\" oifname \"wan\" accept; }\n\
                 chain input { type filter hook input priority filter; policy drop;\n\
                 ct state established,related accept; iifname \"lo\" accept; iifname \"lan\" accept; }\n\
                 }\n";
            let file = std::env::temp_dir().join(format!("timlab-{}-{n}.nft", std::process::id()));
            std::fs::write(&file, rules).map_err(|e| e.to_string())?;
            let loaded = run_in(router, "nft", &["-f", &file.display().to_string()]);
            let _ = std::fs::remove_file(&file);
            loaded?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace removes its veth ends and nftables rules with it.
        for ns in self.namespaces() {
            let _ = run("ip", &["netns", "del", ns]);
        }
    }
}
