//! The runtime's functions that read settings from an `Env`. Shared with
//! svcgen's build script (by `#[path]`), which indexes the runtime once.

use std::collections::HashMap;

/// The runtime's functions that take an `Env`, by `Type::function` for
/// methods and by name for free functions. Test modules are left out.
pub fn index(items: &[syn::Item], out: &mut HashMap<String, Vec<syn::Block>>) {
    let takes_env = |sig: &syn::Signature| {
        sig.inputs.iter().any(|i| match i {
            syn::FnArg::Typed(t) => is_env(&t.ty),
            syn::FnArg::Receiver(_) => false,
        })
    };
    for item in items {
        match item {
            syn::Item::Fn(f) if takes_env(&f.sig) => {
                out.entry(f.sig.ident.to_string())
                    .or_default()
                    .push((*f.block).clone());
            }
            syn::Item::Impl(i) => {
                let syn::Type::Path(ty) = &*i.self_ty else {
                    continue;
                };
                let Some(ty) = ty.path.segments.last() else {
                    continue;
                };
                for member in &i.items {
                    if let syn::ImplItem::Fn(f) = member {
                        if takes_env(&f.sig) {
                            out.entry(format!("{}::{}", ty.ident, f.sig.ident))
                                .or_default()
                                .push(f.block.clone());
                        }
                    }
                }
            }
            syn::Item::Mod(m) if !is_test(&m.attrs) => {
                if let Some((_, items)) = &m.content {
                    index(items, out);
                }
            }
            _ => {}
        }
    }
}

fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

/// `Env<F>` or `&Env<F>`.
fn is_env(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::Reference(r) => is_env(&r.elem),
        syn::Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Env"),
        _ => false,
    }
}
