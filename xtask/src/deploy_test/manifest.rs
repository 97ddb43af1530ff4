//! deploy/daemonset.yaml, read the way a cluster would: checked against the
//! Kubernetes schema, and its pod's settings turned into the flags of
//! `ctr run`, so that the test runs tracer exactly as the manifest says.
//! A setting this translation does not know is an error, never skipped:
//! the manifest cannot drift away from what is tested.

use std::{path::Path, process::Command};

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::Value;

use crate::setup::needs::python_dir;

/// Kubernetes releases whose schema the manifest must satisfy (strictly:
/// no unknown field): the oldest and newest kubernetes-validate carries.
pub const KUBERNETES_VERSIONS: &[&str] = &["1.25.0", "1.37.0"];

/// Validates `path` with kubernetes-validate's bundled schemas (no network).
pub fn validate(path: &Path) -> Result<()> {
    for version in KUBERNETES_VERSIONS {
        let out = Command::new("python3")
            .env("PYTHONPATH", python_dir()?)
            .args([
                "-m",
                "kubernetes_validate",
                "--strict",
                "--kubernetes-version",
                version,
            ])
            .arg(path)
            .output()
            .context("could not start python3 -m kubernetes_validate")?;
        ensure!(
            out.status.success(),
            "{} is not valid for Kubernetes {version}:\n{}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The YAML documents of `path`, as JSON values (PyYAML, which
/// kubernetes-validate brings, reads them).
pub fn load(path: &Path) -> Result<Vec<Value>> {
    let out = Command::new("python3")
        .env("PYTHONPATH", python_dir()?)
        .args([
            "-c",
            "import json, sys, yaml; json.dump(list(yaml.safe_load_all(open(sys.argv[1]))), sys.stdout)",
        ])
        .arg(path)
        .output()
        .context("could not start python3 to read YAML")?;
    ensure!(
        out.status.success(),
        "reading {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The one document of `kind`.
pub fn document<'a>(docs: &'a [Value], kind: &str) -> Result<&'a Value> {
    let mut found = docs.iter().filter(|d| d["kind"] == kind);
    let doc = found
        .next()
        .with_context(|| format!("no {kind} in the manifest"))?;
    ensure!(
        found.next().is_none(),
        "more than one {kind} in the manifest"
    );
    Ok(doc)
}

/// What the node gives the pod that the manifest cannot say by itself.
pub struct Node<'a> {
    /// `spec.nodeName`, for the downward API.
    pub name: &'a str,
    /// A file naming the node's PID namespace (for `hostPID`).
    pub pid_namespace: &'a Path,
    /// The capabilities the runtime grants by default (`ctr oci spec`):
    /// `drop: [ALL]` drops these.
    pub runtime_default_caps: &'a [String],
    /// The image's ENTRYPOINT: Kubernetes' `args` replace only its CMD.
    pub entrypoint: &'a [String],
}

/// A DaemonSet's container as `ctr run` flags.
#[derive(Debug, Default)]
pub struct RunSettings {
    /// Flags before the image reference.
    pub flags: Vec<String>,
    pub image: String,
    /// The process: entrypoint and args.
    pub process: Vec<String>,
    /// The capabilities the container must end up with, `CAP_` names.
    pub capabilities: Vec<String>,
    /// `resources.limits.memory`, bytes.
    pub memory_limit: Option<u64>,
    /// Host paths bound into the container: `(host, container)`.
    pub mounts: Vec<(String, String)>,
    /// hostPath directories that did not exist and were made, as kubelet
    /// makes a `DirectoryOrCreate`.
    pub created: Vec<std::path::PathBuf>,
    /// "guaranteed", "burstable" or "besteffort", as kubelet names the cgroup.
    pub qos: &'static str,
}

/// The settings of the DaemonSet `ds`'s only container, on `node`.
pub fn run_settings(ds: &Value, node: &Node) -> Result<RunSettings> {
    let pod = &ds["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().context("no containers")?;
    ensure!(
        containers.len() == 1,
        "the test runs one container; the manifest has {}",
        containers.len()
    );
    let container = &containers[0];
    let mut run = RunSettings::default();
    for (key, value) in pod.as_object().context("pod spec is not a map")? {
        match key.as_str() {
            // What the scheduler, the API server and kubelet's lifecycle use:
            // nothing a container runtime applies.
            "serviceAccountName"
            | "tolerations"
            | "priorityClassName"
            | "terminationGracePeriodSeconds"
            | "containers"
            | "volumes" => {}
            // No token is what a runtime gets when none is mounted.
            "automountServiceAccountToken" => {
                ensure!(value == false, "a service account token is mounted")
            }
            "hostPID" if value == true => run
                .flags
                .push(format!("--with-ns=pid:{}", node.pid_namespace.display())),
            "hostNetwork" if value == true => run.flags.push("--net-host".into()),
            "hostPID" | "hostNetwork" => {}
            other => bail!("deploy-test does not know how to apply pod setting `{other}`"),
        }
    }
    for (key, value) in container.as_object().context("container is not a map")? {
        match key.as_str() {
            "name" => {}
            // The image is loaded from the archive: nothing is pulled.
            "imagePullPolicy" => {}
            "image" => run.image = value.as_str().context("image")?.to_owned(),
            "args" => {}
            "env" => env(value, node, &mut run)?,
            "securityContext" => security(value, node, &mut run)?,
            "resources" => resources(value, &mut run)?,
            "volumeMounts" => mounts(value, &pod["volumes"], &mut run)?,
            other => bail!("deploy-test does not know how to apply container setting `{other}`"),
        }
    }
    ensure!(
        container.get("command").is_none(),
        "command replaces the image's entrypoint: not handled"
    );
    run.process = node.entrypoint.to_vec();
    for arg in container["args"].as_array().into_iter().flatten() {
        run.process
            .push(arg.as_str().context("an arg is not a string")?.to_owned());
    }
    run.qos = qos(&container["resources"]);
    Ok(run)
}

fn env(list: &Value, node: &Node, run: &mut RunSettings) -> Result<()> {
    for var in list.as_array().context("env is not a list")? {
        let name = var["name"].as_str().context("env without name")?;
        let value = if let Some(value) = var["value"].as_str() {
            value.to_owned()
        } else {
            match var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("spec.nodeName") => node.name.to_owned(),
                other => bail!("env {name}: deploy-test does not know how to fill {other:?}"),
            }
        };
        run.flags.push(format!("--env={name}={value}"));
    }
    Ok(())
}

fn security(context: &Value, node: &Node, run: &mut RunSettings) -> Result<()> {
    for (key, value) in context
        .as_object()
        .context("securityContext is not a map")?
    {
        match (key.as_str(), value) {
            ("privileged", Value::Bool(false)) => {}
            ("privileged", Value::Bool(true)) => run.flags.push("--privileged".into()),
            // ctr's containers have no_new_privs set, what `false` asks for.
            ("allowPrivilegeEscalation", Value::Bool(false)) => {}
            ("readOnlyRootFilesystem", Value::Bool(true)) => run.flags.push("--read-only".into()),
            ("readOnlyRootFilesystem", Value::Bool(false)) => {}
            // ctr runs containers as root unless told otherwise.
            ("runAsUser", value) if value == 0 => {}
            ("seccompProfile", profile) => match profile["type"].as_str() {
                Some("RuntimeDefault") => run.flags.push("--seccomp".into()),
                Some("Unconfined") => {}
                other => bail!("seccompProfile {other:?} is not handled"),
            },
            ("capabilities", caps) => {
                let names = |list: &Value| -> Vec<String> {
                    list.as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(|cap| format!("CAP_{cap}"))
                        .collect()
                };
                let drop = names(&caps["drop"]);
                let add = names(&caps["add"]);
                let mut kept: Vec<String> = if drop.iter().any(|c| c == "CAP_ALL") {
                    Vec::new()
                } else {
                    node.runtime_default_caps.to_vec()
                };
                for cap in node.runtime_default_caps {
                    if drop.iter().any(|c| c == "CAP_ALL" || c == cap) {
                        run.flags.push(format!("--cap-drop={cap}"));
                        kept.retain(|k| k != cap);
                    }
                }
                for cap in add {
                    run.flags.push(format!("--cap-add={cap}"));
                    kept.push(cap);
                }
                run.capabilities = kept;
            }
            (other, value) => {
                bail!("deploy-test does not know how to apply securityContext {other}: {value}")
            }
        }
    }
    Ok(())
}

fn resources(resources: &Value, run: &mut RunSettings) -> Result<()> {
    if let Some(memory) = resources["limits"]["memory"].as_str() {
        let bytes = quantity_bytes(memory)?;
        run.memory_limit = Some(bytes);
        run.flags.push(format!("--memory-limit={bytes}"));
    }
    if let Some(cpu) = resources["limits"]["cpu"].as_str() {
        let millis = quantity_millicpu(cpu)?;
        run.flags.push(format!("--cpus={}", millis as f64 / 1000.0));
    }
    // kubelet turns the CPU request into shares: 1024 per CPU.
    if let Some(cpu) = resources["requests"]["cpu"].as_str() {
        let millis = quantity_millicpu(cpu)?;
        run.flags
            .push(format!("--cpu-shares={}", (millis * 1024 / 1000).max(2)));
    }
    Ok(())
}

/// kubelet's QoS class, as it names the pod's cgroup parent.
fn qos(resources: &Value) -> &'static str {
    let limits = &resources["limits"];
    let requests = &resources["requests"];
    if limits.is_null() && requests.is_null() {
        "besteffort"
    } else if ["cpu", "memory"]
        .iter()
        .all(|r| !limits[r].is_null() && (requests[r].is_null() || requests[r] == limits[r]))
    {
        "guaranteed"
    } else {
        "burstable"
    }
}

fn mounts(mounts: &Value, volumes: &Value, run: &mut RunSettings) -> Result<()> {
    for mount in mounts.as_array().context("volumeMounts is not a list")? {
        let name = mount["name"].as_str().context("volumeMount without name")?;
        let volume = volumes
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == name)
            .with_context(|| format!("no volume {name}"))?;
        let host = &volume["hostPath"];
        let path = host["path"]
            .as_str()
            .with_context(|| format!("volume {name} is not a hostPath"))?;
        match host["type"].as_str() {
            Some("Directory") => ensure!(
                Path::new(path).is_dir(),
                "hostPath {path} is not a directory on this node"
            ),
            Some("DirectoryOrCreate") => {
                if !Path::new(path).exists() {
                    std::fs::create_dir_all(path)?;
                    run.created.push(path.into());
                }
            }
            other => bail!("hostPath type {other:?} is not handled"),
        }
        let read_only = mount["readOnly"] == true;
        // Kubernetes binds host paths recursively (rbind).
        let mut options = vec!["rbind", if read_only { "ro" } else { "rw" }];
        match mount["mountPropagation"].as_str() {
            None | Some("None") => options.push("rprivate"),
            Some("HostToContainer") => options.push("rslave"),
            other => bail!("mountPropagation {other:?} is not handled"),
        }
        let target = mount["mountPath"]
            .as_str()
            .context("volumeMount without mountPath")?;
        run.mounts.push((path.to_owned(), target.to_owned()));
        run.flags.push(format!(
            "--mount=type=bind,src={path},dst={target},options={}",
            options.join(":")
        ));
    }
    Ok(())
}

impl RunSettings {
    /// Where a path of the container is on the host, through its mounts.
    pub fn host_path(&self, in_container: &str) -> Option<std::path::PathBuf> {
        self.mounts
            .iter()
            .filter_map(|(host, target)| {
                let rest = Path::new(in_container).strip_prefix(target).ok()?;
                Some((target.len(), Path::new(host).join(rest)))
            })
            .max_by_key(|(depth, _)| *depth)
            .map(|(_, path)| path)
    }

    /// The value of `--NAME VALUE` in the process's arguments.
    pub fn arg(&self, name: &str) -> Option<&str> {
        let at = self.process.iter().position(|a| a == name)?;
        self.process.get(at + 1).map(String::as_str)
    }
}

/// `64Mi`, `1Gi`, `500M`, `1024` as bytes.
fn quantity_bytes(text: &str) -> Result<u64> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let number: u64 = number
        .parse()
        .with_context(|| format!("memory quantity {text}"))?;
    let factor = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" => 1000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => bail!("memory quantity {text}: unit {unit} not handled"),
    };
    Ok(number * factor)
}

/// `50m`, `1`, `0.5` as thousandths of a CPU.
fn quantity_millicpu(text: &str) -> Result<u64> {
    if let Some(millis) = text.strip_suffix('m') {
        return millis
            .parse()
            .with_context(|| format!("cpu quantity {text}"));
    }
    let cpus: f64 = text
        .parse()
        .with_context(|| format!("cpu quantity {text}"))?;
    Ok((cpus * 1000.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_read_as_kubernetes_writes_them() {
        assert_eq!(quantity_bytes("64Mi").unwrap(), 64 << 20);
        assert_eq!(quantity_bytes("1G").unwrap(), 1_000_000_000);
        assert!(quantity_bytes("64MB").is_err());
        assert_eq!(quantity_millicpu("50m").unwrap(), 50);
        assert_eq!(quantity_millicpu("0.5").unwrap(), 500);
    }

    #[test]
    fn qos_class_follows_requests_and_limits() {
        let r = |v: &str| serde_json::from_str::<Value>(v).unwrap();
        assert_eq!(qos(&Value::Null), "besteffort");
        assert_eq!(
            qos(&r(
                r#"{"requests":{"cpu":"50m","memory":"64Mi"},"limits":{"memory":"256Mi"}}"#
            )),
            "burstable"
        );
        assert_eq!(
            qos(&r(r#"{"limits":{"cpu":"1","memory":"256Mi"}}"#)),
            "guaranteed"
        );
    }

    #[test]
    fn unknown_settings_are_refused_not_skipped() {
        let ds: Value = serde_json::from_str(
            r#"{"spec":{"template":{"spec":{"hostIPC":true,"containers":[{"name":"t","image":"i"}]}}}}"#,
        )
        .unwrap();
        let node = Node {
            name: "n",
            pid_namespace: Path::new("/proc/self/ns/pid"),
            runtime_default_caps: &[],
            entrypoint: &[],
        };
        let err = run_settings(&ds, &node).unwrap_err().to_string();
        assert!(err.contains("hostIPC"), "{err}");
    }
}
