//! What `--pid`, `--pod` and `--container` select. A process in a pod selects
//! its pod, so the selection survives container restarts (new PID, new
//! container id, same pod UID).

use std::fmt;

use crate::attribution::Attribution;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Everything,
    /// One pod by UID (from `--pid` of a process in a pod).
    PodUid {
        uid: String,
        label: String,
    },
    /// Pods by name: a recreated pod (new UID, same name) is still followed.
    PodName {
        namespace: String,
        name: String,
    },
    /// A container id or a prefix of one (`--container`, or `--pid` of a
    /// process in a container outside Kubernetes).
    Container {
        id_prefix: String,
    },
    /// A process outside any container (`--pid`).
    Process {
        tgid: u32,
    },
}

impl Scope {
    /// The selection `--pid` means for a process with this attribution.
    pub fn for_process(tgid: u32, attribution: &Attribution) -> Self {
        if let Some(pod) = &attribution.pod {
            let label = match (&pod.namespace, &pod.name) {
                (Some(ns), Some(name)) => format!("pod {ns}/{name}"),
                _ => format!("pod uid {}", pod.uid),
            };
            return Self::PodUid {
                uid: pod.uid.clone(),
                label,
            };
        }
        if let Some(container) = &attribution.container {
            return Self::Container {
                id_prefix: container.id.clone(),
            };
        }
        Self::Process { tgid }
    }

    pub fn matches(&self, tgid: u32, attribution: &Attribution) -> bool {
        match self {
            Self::Everything => true,
            Self::PodUid { uid, .. } => attribution.pod.as_ref().is_some_and(|p| &p.uid == uid),
            Self::PodName { namespace, name } => attribution.pod.as_ref().is_some_and(|p| {
                p.namespace.as_deref() == Some(namespace.as_str())
                    && p.name.as_deref() == Some(name.as_str())
            }),
            Self::Container { id_prefix } => attribution
                .container
                .as_ref()
                .is_some_and(|c| c.id.starts_with(id_prefix.as_str())),
            Self::Process { tgid: wanted } => *wanted == tgid,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Everything => f.write_str("every process on the node"),
            Self::PodUid { label, uid } => {
                write!(f, "{label} (uid {uid}), across container restarts")
            }
            Self::PodName { namespace, name } => {
                write!(f, "pod {namespace}/{name}, across restarts and re-creation")
            }
            Self::Container { id_prefix } => write!(f, "container {id_prefix}"),
            Self::Process { tgid } => write!(f, "process {tgid}"),
        }
    }
}

/// `--pod NAMESPACE/NAME`.
pub fn parse_pod_name(s: &str) -> Result<(String, String), String> {
    let (ns, name) = s
        .split_once('/')
        .ok_or_else(|| format!("'{s}' is not NAMESPACE/NAME (e.g. default/web-7f9c-x2k4)"))?;
    let valid = |part: &str| {
        !part.is_empty()
            && part.len() <= 253
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    if !valid(ns) || !valid(name) {
        return Err(format!(
            "'{s}' is not NAMESPACE/NAME: both must be lowercase DNS names"
        ));
    }
    Ok((ns.to_owned(), name.to_owned()))
}

/// `--container ID`: a container id or a prefix of one (as `docker ps` or
/// `crictl ps` print them), optionally with its runtime's `scheme://`.
pub fn parse_container_id(s: &str) -> Result<String, String> {
    let id = s.rsplit("://").next().unwrap_or(s).to_ascii_lowercase();
    if id.len() < 4 || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "'{s}' is not a container id: expected 4 to 64 hex digits"
        ));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::{cgroup::QosClass, cgroup::Runtime, Container, Pod};

    fn in_pod(uid: &str, ns: &str, name: &str, container: &str) -> Attribution {
        Attribution {
            cgroup: "/kubepods/x".into(),
            container: Some(Container {
                id: container.into(),
                runtime: Runtime::Containerd,
                name: Some("app".into()),
            }),
            pod: Some(Pod {
                uid: uid.into(),
                qos: QosClass::Burstable,
                namespace: Some(ns.into()),
                name: Some(name.into()),
            }),
        }
    }

    #[test]
    fn pid_in_pod_follows_the_pod_across_containers() {
        let first = in_pod("u1", "default", "web", "aaaa1111");
        let restarted = in_pod("u1", "default", "web", "bbbb2222");
        let other = in_pod("u2", "default", "db", "cccc3333");
        let scope = Scope::for_process(10, &first);
        assert!(scope.matches(10, &first));
        assert!(scope.matches(99, &restarted));
        assert!(!scope.matches(10, &other));
        assert!(!scope.matches(1, &Attribution::host()));
    }

    #[test]
    fn host_process_scope_is_the_process() {
        let scope = Scope::for_process(42, &Attribution::host());
        assert_eq!(scope, Scope::Process { tgid: 42 });
        assert!(scope.matches(42, &Attribution::host()));
        assert!(!scope.matches(43, &Attribution::host()));
    }

    #[test]
    fn pod_name_and_container_prefix() {
        let a = in_pod("u1", "default", "web", "abcdef0123");
        assert!(Scope::PodName {
            namespace: "default".into(),
            name: "web".into()
        }
        .matches(1, &a));
        assert!(!Scope::PodName {
            namespace: "kube-system".into(),
            name: "web".into()
        }
        .matches(1, &a));
        assert!(Scope::Container {
            id_prefix: "abcd".into()
        }
        .matches(1, &a));
        assert!(!Scope::Container {
            id_prefix: "abce".into()
        }
        .matches(1, &a));
    }

    #[test]
    fn parses_pod_and_container_arguments() {
        assert_eq!(
            parse_pod_name("default/web-7f9c").unwrap(),
            ("default".into(), "web-7f9c".into())
        );
        assert!(parse_pod_name("web").is_err());
        assert!(parse_pod_name("/web").is_err());
        assert!(parse_pod_name("Default/Web").is_err());
        assert_eq!(
            parse_container_id("containerd://ABCDEF12").unwrap(),
            "abcdef12"
        );
        assert!(parse_container_id("xyz").is_err());
        assert!(parse_container_id("12").is_err());
    }
}
