//! `dvx dag`.

use std::process::ExitCode;

use dvx_engine::Graph;
use miette::Result;

use super::Loaded;
use crate::cli::DagFormat;

pub fn dag(l: Loaded, format: DagFormat) -> Result<ExitCode> {
    let p = &l.pipeline;
    let g = Graph::build(p)?;
    match format {
        DagFormat::Text => {
            for &i in &g.order {
                let s = &p.stages[i];
                let ups: Vec<&str> = g.upstream[i].iter().map(|&u| p.stages[u].name.as_str()).collect();
                if ups.is_empty() {
                    println!("{} ({})", s.name, s.kind);
                } else {
                    println!("{} ({}) <- {}", s.name, s.kind, ups.join(", "));
                }
            }
        }
        DagFormat::Dot => {
            println!("digraph \"{}\" {{", p.name);
            for &i in &g.order {
                println!("  \"{}\" [label=\"{}\\n{}\"];", p.stages[i].name, p.stages[i].name, p.stages[i].kind);
            }
            for &i in &g.order {
                for &u in &g.upstream[i] {
                    println!("  \"{}\" -> \"{}\";", p.stages[u].name, p.stages[i].name);
                }
            }
            println!("}}");
        }
        DagFormat::Mermaid => {
            println!("flowchart TD");
            for &i in &g.order {
                println!("  s{i}[\"{} ({})\"]", p.stages[i].name, p.stages[i].kind);
            }
            for &i in &g.order {
                for &u in &g.upstream[i] {
                    println!("  s{u} --> s{i}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
