//! End to end: import a small tar, save it in both formats, load into fresh stores, compare.

use std::io::Write;

use strata_cas::{Reference, Store};
use strata_oci::{ArchiveFormat, ImageSummary, Images, Removal};

fn rootfs_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_path("bin/").unwrap();
    h.set_mode(0o755);
    h.set_size(0);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    b.append(&h, &[][..]).unwrap();
    let data = b"#!/bin/sh\necho hello\n".repeat(1000);
    let mut h = tar::Header::new_ustar();
    h.set_path("bin/hello").unwrap();
    h.set_mode(0o755);
    h.set_size(data.len() as u64);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    b.append(&h, &data[..]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_path("bin/sh").unwrap();
    h.set_link_name("hello").unwrap();
    h.set_mode(0o777);
    h.set_size(0);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    b.append(&h, &[][..]).unwrap();
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn fresh() -> (tempfile::TempDir, Images) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, Images::new(store))
}

/// Imports the test rootfs as `name`, with `message` as its history comment.
fn import_named(images: &Images, name: &str, message: &str) -> ImageSummary {
    images
        .import(
            &rootfs_tar()[..],
            Some(&name.parse().unwrap()),
            &[],
            Some(message),
        )
        .unwrap()
}

#[test]
fn import_save_load_roundtrip() {
    let (_d, images) = fresh();
    let r: Reference = "busybox".parse().unwrap();
    let s = images
        .import(
            &gzip(&rootfs_tar())[..],
            Some(&r),
            &[r#"CMD ["sh"]"#.to_string()],
            None,
        )
        .unwrap();
    assert_eq!(s.layers.len(), 1);
    assert_eq!(images.resolve("busybox:latest").unwrap().id, s.id);
    assert_eq!(images.resolve(&s.id.hex()[..6]).unwrap().id, s.id);
    let hist = images.history("busybox").unwrap();
    assert_eq!(hist.len(), 1);
    assert_eq!(hist[0].comment, "Imported from -");
    let inspect = images.inspect("busybox").unwrap();
    assert_eq!(inspect["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(inspect["RepoTags"], serde_json::json!(["busybox:latest"]));

    for format in [
        ArchiveFormat::Docker,
        ArchiveFormat::Oci,
        ArchiveFormat::OciZstd,
    ] {
        let mut out = Vec::new();
        images
            .save(&["busybox".to_string()], format, &mut out)
            .unwrap();
        // Deterministic and, for OCI, taken from the compression cache the second time.
        let mut again = Vec::new();
        images
            .save(&["busybox".to_string()], format, &mut again)
            .unwrap();
        assert_eq!(out, again, "{format:?}");

        let (_d2, other) = fresh();
        let loaded = other.load(&out[..]).unwrap();
        assert_eq!(loaded.len(), 1, "{format:?}");
        assert_eq!(
            loaded[0]
                .reference
                .as_ref()
                .map(|r| r.familiar())
                .as_deref(),
            Some("busybox:latest")
        );
        assert_eq!(loaded[0].id, s.id, "{format:?}: same config, same ID");
        assert!(
            other.store().verify().unwrap().is_empty(),
            "{format:?}: verify"
        );
        let listed = other.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].layers, s.layers, "{format:?}: same diff IDs");

        // Saving the loaded image again gives the same archive.
        let mut re = Vec::new();
        other
            .save(&["busybox".to_string()], format, &mut re)
            .unwrap();
        assert_eq!(re, out, "{format:?}: save round-trips");
    }
}

fn have(tool: &str) -> bool {
    std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut std::process::Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn skopeo_and_umoci_read_our_archives() {
    if !have("skopeo") {
        eprintln!("skopeo not installed: skipped");
        return;
    }
    let (_d, images) = fresh();
    let r: Reference = "busybox".parse().unwrap();
    images
        .import(&rootfs_tar()[..], Some(&r), &[], None)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let docker = dir.path().join("d.tar");
    let oci = dir.path().join("o.tar");
    images
        .save(
            &["busybox".into()],
            ArchiveFormat::Docker,
            std::fs::File::create(&docker).unwrap(),
        )
        .unwrap();
    images
        .save(
            &["busybox".into()],
            ArchiveFormat::Oci,
            std::fs::File::create(&oci).unwrap(),
        )
        .unwrap();
    run(std::process::Command::new("skopeo")
        .arg("inspect")
        .arg(format!("docker-archive:{}", docker.display())));
    let layout = dir.path().join("layout");
    run(std::process::Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci-archive:{}", oci.display()))
        .arg(format!("oci:{}:latest", layout.display())));
    // What skopeo writes loads back with the same diff IDs.
    let back = dir.path().join("back.tar");
    run(std::process::Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci-archive:{}", oci.display()))
        .arg(format!("docker-archive:{}:busybox:latest", back.display())));
    let (_d2, other) = fresh();
    other.load(std::fs::File::open(&back).unwrap()).unwrap();
    assert_eq!(
        other.list().unwrap()[0].layers,
        images.list().unwrap()[0].layers
    );
    if have("umoci") {
        let bundle = dir.path().join("bundle");
        run(std::process::Command::new("umoci")
            .arg("unpack")
            .arg("--rootless")
            .arg("--image")
            .arg(format!("{}:latest", layout.display()))
            .arg(&bundle));
        let hello = std::fs::read(bundle.join("rootfs/bin/hello")).unwrap();
        assert_eq!(hello, b"#!/bin/sh\necho hello\n".repeat(1000));
        let link = std::fs::read_link(bundle.join("rootfs/bin/sh")).unwrap();
        assert_eq!(link, std::path::Path::new("hello"));
    }
}

#[test]
fn tag_and_remove() {
    let (_d, images) = fresh();
    let a: Reference = "a:1".parse().unwrap();
    let s = images
        .import(&rootfs_tar()[..], Some(&a), &[], Some("m"))
        .unwrap();
    images.tag("a:1", "b").unwrap();
    assert_eq!(images.list().unwrap()[0].references.len(), 2);
    // By ID with two names: refused without force.
    assert!(images.remove(&[s.id.to_string()], false).is_err());
    let r = images.remove(&["a:1".to_string()], false).unwrap();
    assert_eq!(r, vec![Removal::Untagged(a.clone())]);
    let r = images.remove(&["b".to_string()], false).unwrap();
    assert_eq!(
        r,
        vec![
            Removal::Untagged("b".parse().unwrap()),
            Removal::Deleted(s.id)
        ]
    );
    assert!(images.list().unwrap().is_empty());
    let err = images.resolve("b").unwrap_err().to_string();
    assert_eq!(err, "No such image: b");

    // Untagged import stays listed as dangling; re-tagging dangles the old image.
    let u = images.import(&rootfs_tar()[..], None, &[], None).unwrap();
    let l = images.list().unwrap();
    assert_eq!(l.len(), 1);
    assert!(l[0].references.is_empty());
    images.tag(&u.id.hex()[..12], "x").unwrap();
    let v = import_named(&images, "x", "other");
    let l = images.list().unwrap();
    assert_eq!(l.len(), 2);
    assert!(l.iter().any(|i| i.id == u.id && i.references.is_empty()));
    assert!(l.iter().any(|i| i.id == v.id && i.references.len() == 1));
    let r = images.remove(&[u.id.to_string()], false).unwrap();
    assert_eq!(r, vec![Removal::Deleted(u.id)]);
}

#[test]
fn bad_archives_name_the_problem() {
    let (_d, images) = fresh();
    let err = images.load(&rootfs_tar()[..]).unwrap_err().to_string();
    assert!(
        err.contains("neither manifest.json nor index.json"),
        "{err}"
    );
    let mut b = tar::Builder::new(Vec::new());
    let mj = br#"[{"Config":"c.json","RepoTags":["x:1"],"Layers":["l/layer.tar"]}]"#;
    let mut h = tar::Header::new_ustar();
    h.set_path("manifest.json").unwrap();
    h.set_size(mj.len() as u64);
    h.set_cksum();
    b.append(&h, &mj[..]).unwrap();
    let data = b.into_inner().unwrap();
    let err = images.load(&data[..]).unwrap_err().to_string();
    assert!(err.contains("c.json"), "{err}");
}

#[test]
fn a_name_resolves_from_its_own_manifest_alone() {
    let (_d, images) = fresh();
    let a = import_named(&images, "a", "a");
    let b = import_named(&images, "b", "b");
    // b's manifest is damaged: resolving a by name never reads it (a FROM costs the same
    // however many images, dangling ones of earlier builds say, the store holds)...
    std::fs::write(images.store().blob_path(&b.manifest), b"{}").unwrap();
    let r = images.resolve("a").unwrap();
    assert_eq!((r.id, r.manifest), (a.id, a.manifest));
    assert_eq!(r.reference, Some("a".parse().unwrap()));
    // ...while an ID prefix, which has to look at every image, reports it.
    assert!(images.resolve(&a.id.hex()[..12]).is_err());
}
