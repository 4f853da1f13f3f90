//! A pod's initdata: the TOML document a runtime hands the pod VM (Kata's
//! `io.katacontainers.config.hypervisor.cc_init_data` annotation,
//! gzip'd, base64'd): `version`, `algorithm` and a `[data]` table of files
//! (`policy.rego`, `aa.toml`, `cdh.toml`). bosun takes `policy.rego` as
//! the agent policy at start; the rest belongs to an attestation agent and
//! a CDH, which bosun does not run.
//!
//! Where it is found: `--initdata FILE`, else, when bosun is the guest's
//! init, the QEMU firmware config entry `opt/io.katacontainers.initdata`
//! (how `bosun-podvm` hands it over).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use sha2::Digest;

/// Where QEMU's `-fw_cfg name=opt/io.katacontainers.initdata,file=...`
/// appears in the guest (module qemu_fw_cfg).
pub const FW_CFG: &str = "/sys/firmware/qemu_fw_cfg/by_name/opt/io.katacontainers.initdata/raw";
/// Bound on the document, compressed or not.
const MAX_BYTES: u64 = 4 << 20;

/// A parsed initdata document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Initdata {
    /// The document's `version`.
    pub version: String,
    /// Its digest algorithm (`sha256`, `sha384`, `sha512`).
    pub algorithm: String,
    /// File name → content.
    pub data: BTreeMap<String, String>,
    /// `algorithm:hex` of the document as handed over (what a TEE would
    /// bind into its measurement), for the log.
    pub digest: String,
}

#[derive(serde::Deserialize)]
struct Doc {
    version: String,
    algorithm: String,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

/// Reads and parses `path`.
pub fn read(path: &Path) -> Result<Initdata, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("initdata {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    f.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("initdata {}: {e}", path.display()))?;
    parse(&bytes).map_err(|e| format!("initdata {}: {e}", path.display()))
}

/// Parses a document given as gzip, plain TOML, or base64 of either (the
/// annotation's own form).
pub fn parse(bytes: &[u8]) -> Result<Initdata, String> {
    if bytes.len() as u64 > MAX_BYTES {
        return Err(format!("over {MAX_BYTES} bytes"));
    }
    let raw = match bytes {
        [0x1f, 0x8b, ..] => gunzip(bytes)?,
        _ => {
            let text = std::str::from_utf8(bytes).map_err(|_| "neither gzip, TOML nor base64".to_string())?;
            if toml::from_str::<Doc>(text).is_ok() {
                bytes.to_vec()
            } else {
                use base64::Engine;
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|_| "neither gzip, TOML nor base64".to_string())?;
                match decoded.as_slice() {
                    [0x1f, 0x8b, ..] => gunzip(&decoded)?,
                    _ => decoded,
                }
            }
        }
    };
    let text = std::str::from_utf8(&raw).map_err(|_| "not UTF-8".to_string())?;
    let doc: Doc = toml::from_str(text).map_err(|e| format!("TOML: {e}"))?;
    let digest = match doc.algorithm.as_str() {
        "sha256" => hex(&sha2::Sha256::digest(&raw)),
        "sha384" => hex(&sha2::Sha384::digest(&raw)),
        "sha512" => hex(&sha2::Sha512::digest(&raw)),
        other => return Err(format!("algorithm {other:?}: expected sha256, sha384 or sha512")),
    };
    Ok(Initdata {
        digest: format!("{}:{digest}", doc.algorithm),
        version: doc.version,
        algorithm: doc.algorithm,
        data: doc.data,
    })
}

fn gunzip(b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .take(MAX_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("gzip: {e}"))?;
    if out.len() as u64 > MAX_BYTES {
        return Err(format!("over {MAX_BYTES} bytes unpacked"));
    }
    Ok(out)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const DOC: &str = "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n\"policy.rego\" = '''\npackage agent_policy\ndefault CreateContainerRequest := true\n'''\n\"aa.toml\" = \"\"\n";

    fn gz(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn every_form_a_runtime_hands_over_reads_the_same() {
        use base64::Engine;
        let plain = parse(DOC.as_bytes()).unwrap();
        assert_eq!(plain.version, "0.1.0");
        assert!(plain.data["policy.rego"].contains("package agent_policy"));
        assert!(plain.digest.starts_with("sha384:") && plain.digest.len() == 7 + 96);
        let b64 = base64::engine::general_purpose::STANDARD.encode(gz(DOC.as_bytes()));
        for form in [gz(DOC.as_bytes()), b64.into_bytes()] {
            assert_eq!(parse(&form).unwrap(), plain);
        }
    }

    #[test]
    fn bad_documents_are_named() {
        assert!(parse(b"\x1f\x8bnot gzip").unwrap_err().contains("gzip"));
        assert!(parse(b"%%%").unwrap_err().contains("neither"));
        let bad_alg = DOC.replace("sha384", "md5");
        assert!(parse(bad_alg.as_bytes()).unwrap_err().contains("md5"));
        assert!(parse(b"version = 1\nalgorithm = ").unwrap_err().contains("neither"));
        assert!(parse(b"version = 1\n").unwrap_err().contains("neither"));
        let not_toml = gz(b"version = ");
        assert!(parse(&not_toml).unwrap_err().contains("TOML"));
        let big = gz(&vec![b'a'; (MAX_BYTES + 10) as usize]);
        assert!(parse(&big).unwrap_err().contains("unpacked"));
    }
}
