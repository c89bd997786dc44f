//! The `tc` commands netfault issues, as data.
//!
//! Per interface: one root `htb` qdisc (handle `1:`, unclassified traffic goes the unshaped
//! direct path), and per fault one class `1:<minor>` fed by u32 filters at priority `<minor>`
//! (one per destination, or match-all), so a fault is removed by deleting its filter priority
//! and its class. The class rate is the fault's `rate_kbit`, or 10 Gbit/s when the class only
//! carries a kernel netem leaf. When the last class goes, the root qdisc is deleted and the
//! kernel puts back the interface's default qdisc.
//!
//! Ingress shaping (a qdisc only shapes what it sends) goes through an `ifb` device per
//! interface, named by [`ifb_name`]: an `ingress` qdisc on the interface redirects matching
//! packets (u32 on the source address, priority `<minor>`) to the ifb, whose root htb shapes
//! them like egress. The ifb and the ingress qdisc are removed with the last ingress class.

use serde::{Deserialize, Serialize};

use crate::spec::{Distribution, FaultSpec, Target};

/// Rate used for classes that only exist to carry a netem leaf.
pub const UNSHAPED_KBIT: u64 = 10_000_000;

/// A class netfault created on an interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcClass {
    /// The device carrying the htb class (an ifb for ingress shaping).
    pub dev: String,
    pub minor: u16,
    /// For ingress shaping: the real interface whose ingress qdisc redirects into `dev`.
    #[serde(default)]
    pub ingress_of: Option<String>,
}

/// The ifb device netfault uses to shape what `dev` receives.
pub fn ifb_name(dev: &str) -> String {
    let keep: String = dev.chars().take(12).collect();
    format!("nfi{keep}")
}

/// A command: the program (`ip` or `tc`) and its arguments.
pub type Cmd = (&'static str, Vec<String>);

/// Create the ifb for `dev`, bring it up, add the ingress qdisc on `dev` and the htb root on
/// the ifb.
pub fn ingress_setup(dev: &str) -> Vec<Cmd> {
    let ifb = ifb_name(dev);
    vec![
        ("ip", s(&["link", "add", &ifb, "type", "ifb"])),
        ("ip", s(&["link", "set", &ifb, "up"])),
        ("tc", s(&["qdisc", "add", "dev", dev, "handle", "ffff:", "ingress"])),
        ("tc", root_add(&ifb)),
    ]
}

/// Undo [`ingress_setup`] (deleting the ifb deletes its qdiscs).
pub fn ingress_teardown(dev: &str) -> Vec<Cmd> {
    vec![
        ("tc", s(&["qdisc", "del", "dev", dev, "ingress"])),
        ("ip", s(&["link", "del", &ifb_name(dev)])),
    ]
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

pub fn root_add(dev: &str) -> Vec<String> {
    s(&[
        "qdisc",
        "add",
        "dev",
        dev,
        "root",
        "handle",
        "1:",
        "htb",
        "default",
        "0",
        "direct_qlen",
        "1000",
    ])
}

pub fn root_del(dev: &str) -> Vec<String> {
    s(&["qdisc", "del", "dev", dev, "root"])
}

/// Commands that add the class, its optional netem leaf and its filters.
pub fn class_add(spec: &FaultSpec, c: &TcClass, netem: bool) -> Vec<Vec<String>> {
    let classid = format!("1:{:x}", c.minor);
    let rate = format!("{}kbit", spec.rate_kbit.unwrap_or(UNSHAPED_KBIT));
    let mut cmds = vec![s(&[
        "class", "add", "dev", &c.dev, "parent", "1:", "classid", &classid, "htb", "rate", &rate, "ceil", &rate,
    ])];
    if netem {
        let mut leaf = s(&[
            "qdisc",
            "add",
            "dev",
            &c.dev,
            "parent",
            &classid,
            "handle",
            &format!("{:x}:", c.minor),
            "netem",
        ]);
        leaf.extend(netem_args(spec));
        cmds.push(leaf);
    }
    let prio = c.minor.to_string();
    let filter = |dev: &str, parent: &str, m: &[String], action: &[&str]| {
        let mut f = s(&[
            "filter", "add", "dev", dev, "parent", parent, "protocol", "ip", "prio", &prio, "u32",
        ]);
        f.extend(m.iter().cloned());
        f.extend(s(action));
        f
    };
    let addr = if c.ingress_of.is_some() { "src" } else { "dst" };
    let matches: Vec<Vec<String>> = match &spec.target {
        Target::All => vec![s(&["match", "u32", "0", "0"])],
        Target::Hosts(h) => h
            .iter()
            .map(|ip| s(&["match", "ip", addr, &format!("{ip}/32")]))
            .collect(),
    };
    for m in &matches {
        cmds.push(filter(&c.dev, "1:", m, &["flowid", &classid]));
    }
    if let Some(real) = &c.ingress_of {
        for m in &matches {
            cmds.push(filter(
                real,
                "ffff:",
                m,
                &["action", "mirred", "egress", "redirect", "dev", &c.dev],
            ));
        }
    }
    cmds
}

/// Commands that remove the class and its filters (filters first: a class with filters
/// pointing at it cannot be deleted).
pub fn class_del(c: &TcClass) -> Vec<Vec<String>> {
    let mut cmds = Vec::new();
    if let Some(real) = &c.ingress_of {
        cmds.push(s(&[
            "filter",
            "del",
            "dev",
            real,
            "parent",
            "ffff:",
            "prio",
            &c.minor.to_string(),
        ]));
    }
    cmds.extend([
        s(&[
            "filter",
            "del",
            "dev",
            &c.dev,
            "parent",
            "1:",
            "prio",
            &c.minor.to_string(),
        ]),
        s(&["class", "del", "dev", &c.dev, "classid", &format!("1:{:x}", c.minor)]),
    ]);
    cmds
}

fn num(x: f64) -> String {
    // tc accepts decimals; keep integers clean.
    if x.fract() == 0.0 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// The netem options for a spec (see tc-netem(8)). Meant for specs that pass
/// `FaultSpec::netem_cannot`; reordering with no base delay is mapped to netem's inverse
/// semantics (netem sends the "reordered" share at once and delays the rest).
pub fn netem_args(spec: &FaultSpec) -> Vec<String> {
    let mut a = Vec::new();
    let reorder = spec.reorder_pct > 0.0;
    let delay = if reorder {
        spec.delay_ms + spec.reorder_delay_ms
    } else {
        spec.delay_ms
    };
    if delay > 0.0 || spec.jitter_ms > 0.0 {
        a.push("delay".into());
        a.push(format!("{}ms", num(delay)));
        if spec.jitter_ms > 0.0 {
            a.push(format!("{}ms", num(spec.jitter_ms)));
            match spec.distribution {
                Distribution::Uniform => {}
                Distribution::Normal => a.extend(s(&["distribution", "normal"])),
                Distribution::Pareto => a.extend(s(&["distribution", "pareto"])),
            }
        }
    }
    if let Some(ge) = spec.loss_model {
        a.extend(s(&["loss", "gemodel"]));
        for p in [ge.p_pct, ge.r_pct, ge.loss_bad_pct, ge.loss_good_pct] {
            a.push(format!("{}%", num(p)));
        }
    } else if spec.loss_pct > 0.0 {
        a.extend(s(&["loss", "random", &format!("{}%", num(spec.loss_pct))]));
    }
    if spec.corrupt_pct > 0.0 {
        a.extend(s(&["corrupt", &format!("{}%", num(spec.corrupt_pct))]));
    }
    if spec.duplicate_pct > 0.0 {
        a.extend(s(&["duplicate", &format!("{}%", num(spec.duplicate_pct))]));
    }
    if reorder {
        a.extend(s(&["reorder", &format!("{}%", num(100.0 - spec.reorder_pct))]));
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(j: &str) -> FaultSpec {
        FaultSpec::from_json(j).unwrap()
    }

    #[test]
    fn rate_only_class_per_host() {
        let c = TcClass {
            dev: "eth0".into(),
            minor: 0x10,
            ingress_of: None,
        };
        let cmds = class_add(
            &spec(r#"{"id":"bw","rate_kbit":8000,"target":["10.0.0.2","10.0.0.3"]}"#),
            &c,
            false,
        );
        assert_eq!(
            cmds[0].join(" "),
            "class add dev eth0 parent 1: classid 1:10 htb rate 8000kbit ceil 8000kbit"
        );
        assert_eq!(
            cmds[1].join(" "),
            "filter add dev eth0 parent 1: protocol ip prio 16 u32 match ip dst 10.0.0.2/32 flowid 1:10"
        );
        assert_eq!(cmds.len(), 3);
        assert_eq!(class_del(&c)[0].join(" "), "filter del dev eth0 parent 1: prio 16");
        assert_eq!(class_del(&c)[1].join(" "), "class del dev eth0 classid 1:10");
        assert_eq!(
            root_add("eth0").join(" "),
            "qdisc add dev eth0 root handle 1: htb default 0 direct_qlen 1000"
        );
    }

    #[test]
    fn netem_leaf_carries_every_option() {
        let c = TcClass {
            dev: "eth0".into(),
            minor: 0x11,
            ingress_of: None,
        };
        let cmds = class_add(
            &spec(
                r#"{"id":"n","delay_ms":100,"jitter_ms":10,"distribution":"normal","loss_pct":2.5,
                   "corrupt_pct":1,"duplicate_pct":3}"#,
            ),
            &c,
            true,
        );
        assert_eq!(
            cmds[1].join(" "),
            "qdisc add dev eth0 parent 1:11 handle 11: netem delay 100ms 10ms distribution normal \
             loss random 2.5% corrupt 1% duplicate 3%"
        );
        assert!(cmds[0].join(" ").contains("rate 10000000kbit"));
        assert!(cmds[2].join(" ").contains("match u32 0 0"));
    }

    #[test]
    fn ingress_shaping_redirects_through_an_ifb() {
        let c = TcClass {
            dev: ifb_name("eth0"),
            minor: 0x12,
            ingress_of: Some("eth0".into()),
        };
        assert_eq!(c.dev, "nfieth0");
        assert_eq!(ifb_name("averyveryverylongname"), "nfiaveryveryver");
        let cmds = class_add(
            &spec(r#"{"id":"in","rate_kbit":500,"direction":"ingress","target":"10.0.0.9"}"#),
            &c,
            false,
        );
        assert_eq!(
            cmds[1].join(" "),
            "filter add dev nfieth0 parent 1: protocol ip prio 18 u32 match ip src 10.0.0.9/32 flowid 1:12"
        );
        assert_eq!(
            cmds[2].join(" "),
            "filter add dev eth0 parent ffff: protocol ip prio 18 u32 match ip src 10.0.0.9/32 \
             action mirred egress redirect dev nfieth0"
        );
        let del = class_del(&c);
        assert_eq!(del[0].join(" "), "filter del dev eth0 parent ffff: prio 18");
        assert_eq!(del.len(), 3);
        let setup: Vec<String> = ingress_setup("eth0")
            .iter()
            .map(|(p, a)| format!("{p} {}", a.join(" ")))
            .collect();
        assert_eq!(setup[2], "tc qdisc add dev eth0 handle ffff: ingress");
        assert_eq!(ingress_teardown("eth0")[1].1.join(" "), "link del nfieth0");
    }

    #[test]
    fn netem_gemodel_and_reorder_mapping() {
        let a = netem_args(&spec(
            r#"{"id":"n","loss_model":{"p_pct":1,"r_pct":25},"reorder_pct":20,"reorder_delay_ms":10}"#,
        ));
        assert_eq!(a.join(" "), "delay 10ms loss gemodel 1% 25% 100% 0% reorder 80%");
    }
}
