//! Just enough PEM (RFC 7468) to read and write private keys: labelled base64 blocks.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// One `-----BEGIN label-----` … `-----END label-----` block, decoded.
pub(crate) struct Block {
    pub(crate) label: String,
    pub(crate) der: Vec<u8>,
}

/// Why a text is not usable PEM. Never carries any of the text: it may be a private key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PemError {
    /// A block is unterminated, mislabelled or not base64.
    Malformed,
    /// A block has RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`): legacy encryption.
    Encrypted,
}

/// Every block of `text`, in order; text outside blocks (comments, blank lines) is skipped.
pub(crate) fn parse(text: &str) -> Result<Vec<Block>, PemError> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = boundary(line, "BEGIN") else {
            continue;
        };
        let mut body = String::new();
        loop {
            let line = lines.next().ok_or(PemError::Malformed)?;
            if let Some(end) = boundary(line, "END") {
                if end != label {
                    return Err(PemError::Malformed);
                }
                break;
            }
            if line.contains(':') {
                return Err(PemError::Encrypted);
            }
            body.push_str(line);
        }
        let der = STANDARD.decode(body).map_err(|_| PemError::Malformed)?;
        blocks.push(Block {
            label: label.to_owned(),
            der,
        });
    }
    Ok(blocks)
}

/// `der` as a PEM block with `label`, 64 characters a line.
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        text.push_str(&String::from_utf8_lossy(line));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

fn boundary<'a>(line: &'a str, kind: &str) -> Option<&'a str> {
    line.strip_prefix("-----")?
        .strip_suffix("-----")?
        .strip_prefix(kind)?
        .strip_prefix(' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_and_surrounding_text_is_skipped() {
        let der: Vec<u8> = (0..=200).collect();
        let text = format!(
            "comment\n{}\n{}",
            encode("EC PARAMETERS", b"\x06\x08"),
            encode("PRIVATE KEY", &der)
        );
        let blocks = parse(&text).unwrap_or_default();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "EC PARAMETERS");
        assert_eq!(blocks[1].label, "PRIVATE KEY");
        assert_eq!(blocks[1].der, der);
        assert!(encode("X", &der).lines().all(|l| l.len() <= 64));
    }

    #[test]
    fn crlf_and_indentation_are_accepted() {
        let text = encode("PRIVATE KEY", b"key bytes").replace('\n', "\r\n  ");
        let blocks = parse(&text).unwrap_or_default();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].der, b"key bytes");
    }

    #[test]
    fn broken_blocks_are_refused() {
        for text in [
            "-----BEGIN PRIVATE KEY-----\nAAAA\n",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
        ] {
            assert_eq!(parse(text).err(), Some(PemError::Malformed), "{text}");
        }
        let legacy = "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END EC PRIVATE KEY-----\n";
        assert_eq!(parse(legacy).err(), Some(PemError::Encrypted));
        assert!(parse("no pem here").is_ok_and(|b| b.is_empty()));
    }
}
