#[test]
fn spans() {
    use hcl::edit::Span;
    let src = std::fs::read_to_string("/tmp/x.hcl").unwrap();
    let body = hcl::edit::parser::parse_body(&src).unwrap();
    for s in body.iter() {
        println!("{:?}", s.span());
        if let Some(b) = s.as_block() {
            println!("block ident {:?} labels {:?}", b.ident.span(), b.labels.iter().map(|l| l.span()).collect::<Vec<_>>());
            for a in b.body.attributes() {
                println!(" attr {:?} key {:?} value {:?} = {:?}", a.span(), a.key.span(), a.value.span(), &src[a.value.span().unwrap()]);
                if let Some(h) = a.value.as_heredoc_template() { for e in h.template.iter() { println!("   el {:?}", e); } }
                if let Some(h) = a.value.as_array() { for e in h.iter() { println!("   arr el {:?} {:?}", e.span(), e); } }
            }
        }
    }
}
