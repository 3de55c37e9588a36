//! `#[polyloop::task]` and `#[polyloop::main]`: the attribute macros of polyloop.
//!
//! Use them through the `polyloop` facade; the expansions refer to `::polyloop::__private`. Without
//! the facade, `crate = "polyloop_child"` (or any path that re-exports it) names the crate to refer
//! to instead, as tokio's macros take `crate = "..."`. See the facade's documentation for what they
//! do.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{format_ident, quote};
use syn::parse::Parser;
use syn::{FnArg, ItemFn, ReturnType, Type, parse_macro_input};

/// Turns an `async fn` into a polyloop task: a unit struct of the same name that implements
/// `polyloop::Task` and is registered so that every worker process can run it.
///
/// The original function stays callable as `name::call(..)`.
///
/// Takes `crate = "path"`, the crate the expansion refers to (default `polyloop`); a worker
/// built on `polyloop-child` without the facade writes
/// `#[polyloop_macros::task(crate = "polyloop_child")]`.
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    let func = parse_macro_input!(item as ItemFn);
    let expanded = parse_args(args.into(), "#[polyloop::task]", |_| Ok(false))
        .and_then(|krate| expand_task(func, &krate));
    match expanded {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

/// Parses the `crate = "path"` argument, handing any other to `other` (which says whether it
/// took it), and returns the path to the crate's `__private` module.
fn parse_args(
    args: TokenStream2,
    macro_name: &str,
    mut other: impl FnMut(&syn::meta::ParseNestedMeta<'_>) -> syn::Result<bool>,
) -> syn::Result<TokenStream2> {
    let mut krate: Option<syn::Path> = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            let value: syn::LitStr = meta.value()?.parse()?;
            krate = Some(value.parse()?);
            Ok(())
        } else if other(&meta)? {
            Ok(())
        } else {
            Err(meta.error(format!("unknown argument to {macro_name}")))
        }
    });
    parser.parse2(args)?;
    Ok(match krate {
        Some(path) => quote!(#path::__private),
        None => quote!(::polyloop::__private),
    })
}

fn expand_task(func: ItemFn, private: &TokenStream2) -> syn::Result<TokenStream2> {
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(sig.fn_token, "#[polyloop::task] needs an `async fn`"));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(&sig.generics, "a polyloop task cannot be generic"));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new_spanned(variadic, "a polyloop task cannot be variadic"));
    }
    let mut arg_types = Vec::new();
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(receiver) => {
                return Err(syn::Error::new_spanned(
                    receiver,
                    "a polyloop task is a free function, not a method",
                ));
            }
            FnArg::Typed(pat) => arg_types.push((*pat.ty).clone()),
        }
    }
    let arg_names: Vec<_> = (0..arg_types.len()).map(|i| format_ident!("__arg{i}")).collect();
    let input_type = match arg_types.as_slice() {
        [single] => quote!(#single),
        many => quote!((#(#many,)*)),
    };
    let destructure = match arg_names.as_slice() {
        [single] => quote!(let #single = input;),
        many => quote!(let (#(#many,)*) = input;),
    };

    let (output_type, convert) = match &sig.output {
        ReturnType::Default => (quote!(()), quote!(::core::result::Result::Ok(output))),
        ReturnType::Type(_, ty) => match result_ok_type(ty) {
            Some(ok) => (
                quote!(#ok),
                quote! {
                    match output {
                        ::core::result::Result::Ok(value) => ::core::result::Result::Ok(value),
                        ::core::result::Result::Err(err) => {
                            #[allow(unused_imports)]
                            use #private::{ViaAsRef as _, ViaDisplay as _, ViaError as _};
                            ::core::result::Result::Err((&&&#private::Wrap(&err)).to_remote())
                        }
                    }
                },
            ),
            None => (quote!(#ty), quote!(::core::result::Result::Ok(output))),
        },
    };

    let attrs = &func.attrs;
    let vis = &func.vis;
    let name = &sig.ident;
    let name_str = name.to_string();
    let mut call_sig = sig.clone();
    call_sig.ident = syn::Ident::new("call", name.span());
    let body = &func.block;
    let doc = format!(
        "The polyloop task `{name_str}`: pass it to a `Pool` method, or run it here with \
         [`{name_str}::call`]."
    );

    Ok(quote! {
        #[doc = #doc]
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, Default)]
        #vis struct #name;

        impl #name {
            #(#attrs)*
            #[allow(clippy::too_many_arguments)]
            #vis #call_sig #body
        }

        impl #private::TaskSpec for #name {
            type Input = #input_type;
            type Output = #output_type;
            const NAME: &'static str = ::core::concat!(::core::module_path!(), "::", #name_str);
        }

        impl #private::Task for #name {
            fn run(
                input: Self::Input,
            ) -> impl ::core::future::Future<
                Output = ::core::result::Result<Self::Output, #private::RemoteError>,
            > + ::core::marker::Send {
                async move {
                    #destructure
                    let output = #name::call(#(#arg_names),*).await;
                    #convert
                }
            }
        }

        const _: () = {
            #[#private::linkme::distributed_slice(#private::TASKS)]
            #[linkme(crate = #private::linkme)]
            static ENTRY: #private::TaskEntry =
                #private::TaskEntry::of::<#name>();

            #[#private::linkme::distributed_slice(#private::SCHEMAS)]
            #[linkme(crate = #private::linkme)]
            static SCHEMA: #private::TaskSchema =
                #private::TaskSchema::of::<#name>();

            // Runs before `main`, so any program holding a task (test and bench binaries
            // included) serves as a worker when a pool starts it as one.
            #[used]
            #[cfg_attr(
                any(target_os = "linux", target_os = "android", target_os = "freebsd",
                    target_os = "netbsd", target_os = "openbsd", target_os = "dragonfly",
                    target_os = "illumos"),
                unsafe(link_section = ".init_array")
            )]
            #[cfg_attr(target_vendor = "apple", unsafe(link_section = "__DATA,__mod_init_func"))]
            static WORKER_HOOK: extern "C" fn() = {
                extern "C" fn worker_hook() {
                    #private::worker_hook();
                }
                worker_hook
            };
        };
    })
}

/// `T` if `ty` is written `Result<T, ..>` (any path ending in `Result`), else `None`.
fn result_ok_type(ty: &Type) -> Option<Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else { return None };
    match args.args.first()? {
        syn::GenericArgument::Type(ok) => Some(ok.clone()),
        _ => None,
    }
}

/// Like `#[tokio::main]`, but the program first serves as a worker if a polyloop pool started it.
///
/// Takes `flavor = "current_thread"` or `flavor = "multi_thread"` (the default),
/// `worker_threads = N` and `crate = "path"` (as for [`macro@task`]).
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    let func = parse_macro_input!(item as ItemFn);
    match expand_main(args.into(), func) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

fn expand_main(args: TokenStream2, func: ItemFn) -> syn::Result<TokenStream2> {
    if func.sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(
            func.sig.fn_token,
            "#[polyloop::main] needs an `async fn`",
        ));
    }
    let mut current_thread = false;
    let mut worker_threads = None;
    let private = parse_args(args, "#[polyloop::main]", |meta| {
        if meta.path.is_ident("flavor") {
            let value: syn::LitStr = meta.value()?.parse()?;
            match value.value().as_str() {
                "current_thread" => current_thread = true,
                "multi_thread" => current_thread = false,
                _ => return Err(meta.error("flavor is \"current_thread\" or \"multi_thread\"")),
            }
            Ok(true)
        } else if meta.path.is_ident("worker_threads") {
            let value: syn::LitInt = meta.value()?.parse()?;
            worker_threads = Some(value.base10_parse::<usize>()?);
            Ok(true)
        } else {
            Ok(false)
        }
    })?;
    let builder = if current_thread {
        quote!(#private::tokio::runtime::Builder::new_current_thread())
    } else {
        let threads = worker_threads.map(|n| quote!(.worker_threads(#n)));
        quote!(#private::tokio::runtime::Builder::new_multi_thread() #threads)
    };
    let attrs = &func.attrs;
    let vis = &func.vis;
    let mut sig = func.sig.clone();
    sig.asyncness = None;
    let body = &func.block;
    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            #private::worker_hook();
            let body = async move #body;
            #builder
                .enable_all()
                .build()
                .expect("failed to build the tokio runtime")
                .block_on(body)
        }
    })
}
