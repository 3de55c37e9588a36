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
/// `polyloop::Task` and is registered so that every worker process can run it. Pass the struct
/// to a pool (`pool.map(double, inputs)`); the function itself stays callable, in this
/// process, as `double(..)` (the struct derefs to a function pointer returning the boxed
/// future) or, unboxed, as `double::call(..)`.
///
/// ```ignore
/// /// Doubles `x`. (This comment documents the task.)
/// #[polyloop::task]
/// async fn double(x: u64) -> u64 {
///     x * 2
/// }
///
/// #[polyloop::task]
/// async fn read_len(path: String) -> Result<usize, std::io::Error> {
///     Ok(tokio::fs::read(path).await?.len())
/// }
/// ```
///
/// The rules:
/// * an `async fn`, free (not a method), neither generic nor variadic, whose future is `Send`;
/// * owned arguments that are `serde` types: they are deserialized in the worker, so `&str`
///   is refused (take a `String`); several arguments make a tuple input;
/// * an owned `serde` output. A return type written `Result<T, E>` (any path ending in
///   `Result`) is a fallible task: `Ok(T)` is its output, and `Err(E)` fails it with `E`'s
///   message and source chain. A `Result` behind an alias (`type Fallible<T> = Result<T, E>`)
///   cannot be seen by the macro: mark it `#[polyloop::task(result)]`.
///
/// The task is a unit struct named like the function, so its name is taken in the value
/// namespace too: a `let` or `for` binding of the same name (`for (i, lookup) in ...` beside a
/// task `lookup`) is read as that struct's pattern and fails to compile. Name the binding
/// otherwise.
///
/// Takes `crate = "path"`, the crate the expansion refers to (default `polyloop`); a worker
/// built on `polyloop-child` without the facade writes
/// `#[polyloop_macros::task(crate = "polyloop_child")]`.
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    let func = parse_macro_input!(item as ItemFn);
    let mut marked_result = false;
    let expanded = parse_args(args.into(), "#[polyloop::task]", |meta| {
        if meta.path.is_ident("result") {
            marked_result = true;
            Ok(true)
        } else {
            Ok(false)
        }
    })
    .and_then(|krate| expand_task(func, &krate, marked_result));
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

fn expand_task(
    func: ItemFn,
    private: &TokenStream2,
    marked_result: bool,
) -> syn::Result<TokenStream2> {
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
            FnArg::Typed(pat) => {
                if let Some(borrowed) = borrow_in(&pat.ty) {
                    return Err(syn::Error::new(
                        borrowed,
                        "a polyloop task takes owned arguments, which the worker deserializes \
                         into: take `String` for `&str`, `Vec<T>` for `&[T]`, `T` for `&T`",
                    ));
                }
                arg_types.push((*pat.ty).clone())
            }
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

    let fails = quote! {
        ::core::result::Result::Err(err) => {
            #[allow(unused_imports)]
            use #private::{
                ViaAsRef as _, ViaDisplay as _, ViaError as _, ViaOpaque as _, ViaSerialize as _,
            };
            let mut remote = (&&&#private::Wrap(&err)).to_remote();
            remote.value = (&&#private::Typed(&err)).typed_value();
            ::core::result::Result::Err(remote)
        }
    };
    let (output_type, convert) = match &sig.output {
        ReturnType::Default if marked_result => {
            return Err(syn::Error::new_spanned(
                &sig.ident,
                "#[polyloop::task(result)] marks a task that returns a `Result`; this one \
                 returns nothing",
            ));
        }
        ReturnType::Default => (quote!(()), quote!(::core::result::Result::Ok(output))),
        ReturnType::Type(_, ty) if marked_result => (
            quote!(<#ty as #private::TaskResult>::Ok),
            quote! {
                match #private::TaskResult::into_result(output) {
                    ::core::result::Result::Ok(value) => ::core::result::Result::Ok(value),
                    #fails
                }
            },
        ),
        ReturnType::Type(_, ty) => match result_ok_type(ty) {
            Some(ok) => (
                quote!(#ok),
                quote! {
                    match output {
                        ::core::result::Result::Ok(value) => ::core::result::Result::Ok(value),
                        #fails
                    }
                },
            ),
            None => (quote!(#ty), quote!(::core::result::Result::Ok(output))),
        },
    };

    let returns = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => quote!(#ty),
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
    // The function's own documentation documents the task, followed by how to use it.
    let docs: Vec<_> = attrs.iter().filter(|attr| attr.path().is_ident("doc")).collect();
    let separator = (!docs.is_empty()).then(|| quote!(#[doc = ""]));

    Ok(quote! {
        #(#docs)*
        #separator
        #[doc = #doc]
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, Default)]
        #vis struct #name;

        impl #name {
            #(#attrs)*
            #[allow(clippy::too_many_arguments)]
            #vis #call_sig #body
        }

        // `double(x)` calls the function here, as `double::call(x)` does, boxed: the struct
        // derefs to a function pointer, which a call expression reaches by auto-deref.
        impl ::core::ops::Deref for #name {
            type Target = fn(#(#arg_types),*) -> ::core::pin::Pin<::std::boxed::Box<
                dyn ::core::future::Future<Output = #returns> + ::core::marker::Send,
            >>;

            fn deref(&self) -> &Self::Target {
                const CALL: <#name as ::core::ops::Deref>::Target =
                    |#(#arg_names: #arg_types),*| ::std::boxed::Box::pin(#name::call(#(#arg_names),*));
                &CALL
            }
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
                #private::TaskEntry::of::<#name>().with_typed_fold({
                    fn start() -> ::core::option::Option<
                        ::std::boxed::Box<dyn #private::TypedFold>,
                    > {
                        #[allow(unused_imports)]
                        use #private::{NotAReducer as _, ViaReducer as _};
                        (&&#private::ReducerProbe::<#name>(::core::marker::PhantomData))
                            .typed_fold()
                    }
                    start
                });

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

/// The first reference or borrowed lifetime written in `ty`, if any: `&str`, `Option<&[u8]>`,
/// `Cow<'a, str>`.
fn borrow_in(ty: &Type) -> Option<proc_macro2::Span> {
    fn scan(tokens: TokenStream2) -> Option<proc_macro2::Span> {
        let mut tokens = tokens.into_iter().peekable();
        while let Some(token) = tokens.next() {
            match token {
                proc_macro2::TokenTree::Punct(punct) if punct.as_char() == '&' => {
                    return Some(punct.span());
                }
                // A lifetime other than 'static: `'a`.
                proc_macro2::TokenTree::Punct(punct) if punct.as_char() == '\'' => {
                    if let Some(proc_macro2::TokenTree::Ident(name)) = tokens.peek()
                        && name != "static"
                    {
                        return Some(punct.span());
                    }
                }
                proc_macro2::TokenTree::Group(group) => {
                    if let Some(span) = scan(group.stream()) {
                        return Some(span);
                    }
                }
                _ => {}
            }
        }
        None
    }
    scan(quote!(#ty))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(func: ItemFn, marked_result: bool) -> String {
        match expand_task(func, &quote!(::polyloop::__private), marked_result) {
            Ok(_) => panic!("expanded"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn borrowed_arguments_are_refused_with_what_to_take_instead() {
        let cases: [ItemFn; 4] = [
            syn::parse_quote!(
                async fn a(s: &str) {}
            ),
            syn::parse_quote!(
                async fn b(n: u64, s: Option<&[u8]>) {}
            ),
            syn::parse_quote!(
                async fn c(s: std::borrow::Cow<'a, str>) {}
            ),
            syn::parse_quote!(
                async fn d(s: &'static str) {}
            ),
        ];
        for func in cases {
            let why = refusal(func, false);
            assert!(why.contains("owned arguments") && why.contains("`String`"), "{why}");
        }
        let owned: ItemFn = syn::parse_quote!(
            async fn e(s: String, t: Box<str>) {}
        );
        assert!(expand_task(owned, &quote!(x), false).is_ok());
    }

    #[test]
    fn a_result_mark_needs_a_return_type() {
        let why = refusal(
            syn::parse_quote!(
                async fn f(n: u64) {}
            ),
            true,
        );
        assert!(why.contains("returns nothing"), "{why}");
    }

    #[test]
    fn the_functions_documentation_documents_the_task() {
        let func: ItemFn = syn::parse_quote! {
            /// Doubles.
            async fn double(x: u64) -> u64 { x * 2 }
        };
        let expanded = expand_task(func, &quote!(p), false).unwrap().to_string();
        let doc = expanded.find("Doubles.").expect("the doc");
        let strukt = expanded.find("struct double").expect("the struct");
        assert!(doc < strukt, "{expanded}");
    }
}
