use hyrelay_nbfx::*;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let xml = std::fs::read_to_string(&a[1]).unwrap();
    let recs = xml_to_records(xml.trim_end(), None, &EncodeOptions::default()).unwrap();
    let bin = std::fs::read(&a[2]).unwrap();
    let orig = read_records(
        &bin,
        Dictionaries::static_only(),
        &Limits::buffered(1 << 20),
    )
    .unwrap();
    for (x, y) in recs.iter().zip(orig.iter()) {
        if x != y {
            println!("ours {x:?}\nwcf  {y:?}");
        }
    }
}
