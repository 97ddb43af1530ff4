//! Apt sources on the machine's Debian mirror. Set-up adds bookworm-backports,
//! where the suite's qemu comes from, to the machine's sources when missing;
//! other suites (the guest kernels' bullseye, trixie-backports, ...) are
//! derived the same way but only handed to apt commands of their own.

use std::{fs, path::PathBuf};

use anyhow::{bail, Context as _, Result};

use super::is_root;

/// The release the guest kernels come from, and its backports suite.
pub const RELEASE: &str = "bookworm";
pub const BACKPORTS: &str = "bookworm-backports";

const SOURCES_DIR: &str = "/etc/apt/sources.list.d";

/// What apt's sources hold, as far as setup cares.
#[derive(Clone, Copy, Default)]
pub struct AptSources {
    /// apt has bookworm-backports.
    pub backports: bool,
    /// A source was just added: apt's lists need a refresh.
    pub added: bool,
}

/// Adds bookworm-backports to apt's sources if missing (the suite's qemu
/// comes from there).
pub fn ensure_backports() -> Result<AptSources> {
    let unchanged = |backports| AptSources {
        backports,
        added: false,
    };
    match backports()? {
        Backports::Present => Ok(unchanged(true)),
        Backports::OtherRelease(codename) => {
            println!(
                "setup: this is Debian `{codename}`, not {RELEASE}: vm-test's qemu and guest kernels \
                 come from {RELEASE} and {BACKPORTS} and will not be found"
            );
            Ok(unchanged(false))
        }
        Backports::Missing { file, text } if is_root() => {
            println!(
                "setup: adding {BACKPORTS} to apt's sources ({})",
                file.display()
            );
            fs::write(&file, text)
                .with_context(|| format!("could not write {}", file.display()))?;
            Ok(AptSources {
                backports: true,
                added: true,
            })
        }
        Backports::Missing { file, text } => {
            println!(
                "setup: vm-test needs {BACKPORTS} in apt's sources; as root, write {} with:\n{text}",
                file.display()
            );
            Ok(unchanged(false))
        }
    }
}

enum Backports {
    Present,
    /// Not a bookworm system: its suites do not hold the guest kernels.
    OtherRelease(String),
    /// The source file to write.
    Missing {
        file: PathBuf,
        text: String,
    },
}

/// Whether apt knows bookworm-backports, and if not, the source that adds it.
fn backports() -> Result<Backports> {
    let codename = fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VERSION_CODENAME="))
        .map(|name| name.trim_matches('"').to_owned())
        .unwrap_or_default();
    if codename != RELEASE {
        return Ok(Backports::OtherRelease(codename));
    }
    let sources = read_sources()?;
    if sources.iter().any(|source| source.suite == BACKPORTS) {
        return Ok(Backports::Present);
    }
    let suite = suite_on_mirror(&sources, BACKPORTS)?;
    let mut text = format!(
        "# Added by tracer's `cargo xtask setup`: the suite's qemu comes from {BACKPORTS}.\n\
         Types: deb\nURIs: {}\nSuites: {BACKPORTS}\nComponents: main\n",
        suite.uri
    );
    if let Some(keyring) = &suite.signed_by {
        text.push_str(&format!("Signed-By: {keyring}\n"));
    }
    Ok(Backports::Missing {
        file: PathBuf::from(SOURCES_DIR).join(format!("{BACKPORTS}.sources")),
        text,
    })
}

/// One binary-package (`deb`) source: a mirror and one of its suites.
#[derive(Debug, PartialEq)]
pub struct Source {
    uri: String,
    suite: String,
    signed_by: Option<String>,
}

impl Source {
    /// The source as a `sources.list` line (main only).
    pub fn line(&self) -> String {
        match &self.signed_by {
            Some(keyring) => format!("deb [signed-by={keyring}] {} {} main", self.uri, self.suite),
            None => format!("deb {} {} main", self.uri, self.suite),
        }
    }
}

/// Debian's archive keyring: it holds the signing keys of every supported
/// release (bullseye's, bookworm's and trixie's among them).
const ARCHIVE_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// A source for any Debian `suite` (`bullseye`, `trixie-backports`,
/// `bullseye-security`, ...) on the mirror this machine's apt already uses for
/// its own release, signed by the same keyring. It is not added to the
/// machine's sources: callers give it to apt commands of their own (the
/// guest kernels are fetched so), so the host never installs from it.
pub fn mirror_source(suite: &str) -> Result<Source> {
    suite_on_mirror(&read_sources()?, suite)
}

/// `suite` on the mirror of the machine's own release: security suites on
/// the mirror its security updates come from, the others on its main mirror.
fn suite_on_mirror(sources: &[Source], suite: &str) -> Result<Source> {
    let model = if suite.ends_with("-security") {
        format!("{RELEASE}-security")
    } else {
        RELEASE.to_owned()
    };
    let Some(base) = sources.iter().find(|source| source.suite == model) else {
        bail!("no apt source serves `{model}`, so none can be derived for `{suite}`: add one to {SOURCES_DIR}");
    };
    // A source without Signed-By trusts apt's global keys; the archive
    // keyring is named so that the derived source checks the same keys
    // wherever it is used.
    let signed_by = base.signed_by.clone().or_else(|| {
        std::path::Path::new(ARCHIVE_KEYRING)
            .is_file()
            .then(|| ARCHIVE_KEYRING.to_owned())
    });
    Ok(Source {
        uri: base.uri.clone(),
        suite: suite.to_owned(),
        signed_by,
    })
}

fn read_sources() -> Result<Vec<Source>> {
    let mut sources = Vec::new();
    if let Ok(text) = fs::read_to_string("/etc/apt/sources.list") {
        sources.extend(one_line_format(&text));
    }
    let dir = match fs::read_dir(SOURCES_DIR) {
        Ok(dir) => dir,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(sources),
        Err(err) => return Err(err).with_context(|| format!("could not list {SOURCES_DIR}")),
    };
    for entry in dir {
        let path = entry?.path();
        let parse = match path.extension().and_then(|e| e.to_str()) {
            Some("list") => one_line_format,
            Some("sources") => deb822_format,
            // apt ignores other names (`.disabled`, `.save`, ...), and so do we.
            _ => continue,
        };
        let text = fs::read_to_string(&path)
            .with_context(|| format!("could not read {}", path.display()))?;
        sources.extend(parse(&text));
    }
    Ok(sources)
}

/// `deb [signed-by=KEYRING ...] URI SUITE COMPONENT...` lines.
fn one_line_format(text: &str) -> Vec<Source> {
    let mut sources = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let Some(rest) = line.trim().strip_prefix("deb ") else {
            continue;
        };
        let mut rest = rest.trim_start();
        let mut signed_by = None;
        if let Some(options) = rest.strip_prefix('[') {
            let Some((options, after)) = options.split_once(']') else {
                continue;
            };
            signed_by = options
                .split_whitespace()
                .find_map(|option| option.strip_prefix("signed-by="))
                .map(str::to_owned);
            rest = after;
        }
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            sources.push(Source {
                uri: uri.to_owned(),
                suite: suite.to_owned(),
                signed_by,
            });
        }
    }
    sources
}

/// deb822 stanzas: `Types:`, `URIs:`, `Suites:`, `Signed-By:`, `Enabled:`.
fn deb822_format(text: &str) -> Vec<Source> {
    let mut sources = Vec::new();
    for stanza in text.split("\n\n") {
        let mut fields = std::collections::HashMap::new();
        for line in stanza.lines() {
            // Continuation lines (an inline key) and comments carry nothing we use.
            if line.starts_with([' ', '\t', '#']) {
                continue;
            }
            if let Some((key, value)) = line.split_once(':') {
                fields.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let field = |key: &str| fields.get(key).map(String::as_str).unwrap_or_default();
        let is_deb = field("types").split_whitespace().any(|t| t == "deb");
        if !is_deb || field("enabled").eq_ignore_ascii_case("no") {
            continue;
        }
        // An empty Signed-By opens an inline key, which a new file cannot share.
        let signed_by = Some(field("signed-by"))
            .filter(|keyring| keyring.starts_with('/'))
            .map(str::to_owned);
        let Some(uri) = field("uris").split_whitespace().next() else {
            continue;
        };
        for suite in field("suites").split_whitespace() {
            sources.push(Source {
                uri: uri.to_owned(),
                suite: suite.to_owned(),
                signed_by: signed_by.clone(),
            });
        }
    }
    sources
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(uri: &str, suite: &str, signed_by: Option<&str>) -> Source {
        Source {
            uri: uri.into(),
            suite: suite.into(),
            signed_by: signed_by.map(Into::into),
        }
    }

    #[test]
    fn one_line_sources_with_and_without_options() {
        let text = "# comment\n\
            deb http://mirror.example/debian bookworm main contrib\n\
            deb-src http://mirror.example/debian bookworm main\n\
            deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://m.example/d bookworm-updates main # note\n";
        assert_eq!(
            one_line_format(text),
            [
                source("http://mirror.example/debian", "bookworm", None),
                source(
                    "http://m.example/d",
                    "bookworm-updates",
                    Some("/usr/share/keyrings/k.gpg")
                ),
            ]
        );
    }

    #[test]
    fn deb822_stanzas_with_several_suites_and_disabled_ones() {
        let text = "Types: deb\n\
            # http://snapshot.example/archive\n\
            URIs: http://mirror.example/debian\n\
            Suites: bookworm bookworm-updates\n\
            Components: main\n\
            Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\
            \n\
            Types: deb\n\
            URIs: http://other.example/debian\n\
            Suites: trixie\n\
            Enabled: no\n\
            \n\
            Types: deb-src deb\n\
            URIs: http://third.example/debian\n\
            Suites: bookworm-backports\n\
            Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n";
        let keyring = Some("/usr/share/keyrings/debian-archive-keyring.gpg");
        assert_eq!(
            deb822_format(text),
            [
                source("http://mirror.example/debian", "bookworm", keyring),
                source("http://mirror.example/debian", "bookworm-updates", keyring),
                source("http://third.example/debian", "bookworm-backports", None),
            ]
        );
    }

    #[test]
    fn other_suites_on_the_machines_mirrors() {
        let keyring = Some("/k.gpg");
        let sources = [
            source("http://mirror.example/debian", "bookworm", keyring),
            source(
                "http://security.example/debian-security",
                "bookworm-security",
                keyring,
            ),
        ];
        let line = |suite| suite_on_mirror(&sources, suite).unwrap().line();
        assert_eq!(
            line("trixie-backports"),
            "deb [signed-by=/k.gpg] http://mirror.example/debian trixie-backports main"
        );
        assert_eq!(
            line("bullseye-security"),
            "deb [signed-by=/k.gpg] http://security.example/debian-security bullseye-security main"
        );
        assert!(suite_on_mirror(&sources[..1], "bullseye-security").is_err());
    }
}
