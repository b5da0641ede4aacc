//! Structural comparison of SOAP envelopes (as text XML), ignoring what changes from run
//! to run: message ids, `RelatesTo`, the `To` of callbacks, GUIDs and timestamps.

use quick_xml::events::Event;

/// Elements whose text is volatile (WS-Addressing local names).
const VOLATILE_ELEMENTS: &[&str] = &["MessageID", "RelatesTo", "To"];

fn is_digit(b: u8) -> bool {
    b.is_ascii_digit()
}

/// Replace ISO-8601 timestamps (`2026-12-03T06:52:53.318Z`, with offsets) and `urn:uuid:` /
/// bare GUIDs in `s` by placeholders.
pub fn mask_volatile_text(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        // yyyy-mm-ddThh:mm
        if i + 16 <= b.len()
            && b[i..i + 4].iter().all(|&c| is_digit(c))
            && b[i + 4] == b'-'
            && is_digit(b[i + 5])
            && is_digit(b[i + 6])
            && b[i + 7] == b'-'
            && is_digit(b[i + 8])
            && is_digit(b[i + 9])
            && b[i + 10] == b'T'
            && is_digit(b[i + 11])
            && b[i + 13] == b':'
        {
            let mut j = i + 11;
            while j < b.len()
                && (is_digit(b[j]) || matches!(b[j], b':' | b'.' | b'Z' | b'+' | b'-'))
            {
                j += 1;
            }
            out.push_str("{timestamp}");
            i = j;
            continue;
        }
        // 8-4-4-4-12 hex GUID
        if i + 36 <= b.len() && is_guid(&b[i..i + 36]) {
            out.push_str("{guid}");
            i += 36;
            continue;
        }
        let ch = s[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn is_guid(b: &[u8]) -> bool {
    b.iter().enumerate().all(|(k, &c)| match k {
        8 | 13 | 18 | 23 => c == b'-',
        _ => c.is_ascii_hexdigit(),
    })
}

fn start_line(e: &quick_xml::events::BytesStart<'_>, depth: usize) -> (String, String) {
    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
    let mut attrs: Vec<String> = e
        .attributes()
        .flatten()
        .map(|a| {
            format!(
                "{}={:?}",
                String::from_utf8_lossy(a.key.as_ref()),
                mask_volatile_text(&String::from_utf8_lossy(&a.value))
            )
        })
        .collect();
    attrs.sort();
    (
        format!("{}<{name} {}>", "  ".repeat(depth), attrs.join(" ")),
        name,
    )
}

/// One line per node of `xml`, indented, with volatile values masked: the form that
/// [`diff`] compares. Attributes are sorted; whitespace-only text is dropped.
pub fn normalize(xml: &str) -> Result<Vec<String>, String> {
    let mut r = quick_xml::Reader::from_str(xml);
    r.config_mut().trim_text(true);
    let mut lines = Vec::new();
    let mut stack: Vec<String> = Vec::new();
    loop {
        let ev = r.read_event().map_err(|e| format!("not XML: {e}"))?;
        match ev {
            Event::Start(e) => {
                let (line, name) = start_line(&e, stack.len());
                lines.push(line);
                stack.push(name);
            }
            Event::Empty(e) => {
                lines.push(start_line(&e, stack.len()).0);
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Text(t) => {
                let text = t.unescape().map(|c| c.into_owned()).unwrap_or_default();
                let local = stack
                    .last()
                    .map(|n| n.rsplit(':').next().unwrap_or(n).to_owned())
                    .unwrap_or_default();
                let v = if VOLATILE_ELEMENTS.contains(&local.as_str()) {
                    "{volatile}".to_owned()
                } else {
                    mask_volatile_text(&text)
                };
                lines.push(format!("{}{v:?}", "  ".repeat(stack.len())));
            }
            Event::CData(t) => {
                lines.push(format!(
                    "{}{:?}",
                    "  ".repeat(stack.len()),
                    mask_volatile_text(&String::from_utf8_lossy(&t))
                ));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(lines)
}

/// Compare two envelopes structurally. `None` when they agree; otherwise a short report
/// of the first differences (`-` expected, `+` got).
pub fn diff(expected_xml: &str, got_xml: &str) -> Option<String> {
    let a = match normalize(expected_xml) {
        Ok(a) => a,
        Err(e) => return Some(format!("expected envelope: {e}")),
    };
    let b = match normalize(got_xml) {
        Ok(b) => b,
        Err(e) => return Some(format!("received envelope: {e}")),
    };
    if a == b {
        return None;
    }
    let mut out = String::new();
    let mut shown = 0;
    let n = a.len().max(b.len());
    for i in 0..n {
        let (x, y) = (a.get(i), b.get(i));
        if x != y {
            if let Some(x) = x {
                out.push_str(&format!("  - {x}\n"));
            }
            if let Some(y) = y {
                out.push_str(&format!("  + {y}\n"));
            }
            shown += 1;
            if shown >= 5 {
                out.push_str("  …\n");
                break;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volatile_values_are_masked() {
        assert_eq!(
            mask_volatile_text("pong 2026-12-03T06:52:53.3188900Z ok"),
            "pong {timestamp} ok"
        );
        assert_eq!(
            mask_volatile_text("urn:uuid:741d2cda-def9-4cf1-a3ca-25dcbe8198d0"),
            "urn:uuid:{guid}"
        );
        assert_eq!(mask_volatile_text("CUST-0001 1000.00"), "CUST-0001 1000.00");
    }

    #[test]
    fn structure_and_values_are_compared() {
        let a = r#"<s:Envelope xmlns:s="x"><s:Header><a:RelatesTo xmlns:a="w">urn:uuid:741d2cda-def9-4cf1-a3ca-25dcbe8198d0</a:RelatesTo></s:Header><s:Body><R><Score>533</Score><T>pong 2026-12-03T06:52:53Z</T></R></s:Body></s:Envelope>"#;
        let b = a
            .replace("741d2cda", "00000000")
            .replace("06:52:53Z", "07:00:00.1Z");
        assert_eq!(diff(a, &b), None);
        let c = a.replace("533", "534");
        let d = diff(a, &c).unwrap();
        assert!(
            d.contains("- ") && d.contains("\"533\"") && d.contains("\"534\""),
            "{d}"
        );
        let e = a.replace("<Score>533</Score>", "");
        assert!(diff(a, &e).is_some());
    }
}
