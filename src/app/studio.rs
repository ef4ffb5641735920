//! The studio: the one island of the front page. Its props are what the server
//! read for this visitor (small, serialised into the page); its state lives in
//! [`StudioState`].

use super::form::{PromptForm, StatusRegion};
use super::generation::StudioState;
use super::recent::RecentImages;
use super::result::{CopyButton, ResultFigure};
use crate::wire::{image_page_path, QuotaReading, RecentImage};
use leptos::prelude::*;

#[island]
pub fn Studio(
    max_prompt_chars: usize,
    recent_images_kept: usize,
    reading: QuotaReading,
    recent: Vec<RecentImage>,
    /// A generation of the visitor's still running when the page was made
    /// (the page was reloaded): followed as if the form had just sent it.
    following: Option<String>,
    /// The prompt typed before a form post without JavaScript came back.
    typed_prompt: String,
    /// The sentence of the error that post came back with (rendered by the
    /// server: a page without JavaScript is never hydrated).
    first_error: Option<String>,
    /// The signed-in account's e-mail, if any (the quota line names it).
    account: Option<String>,
) -> impl IntoView {
    let state = StudioState::new(reading, recent, following);
    let result_figure = state.result_figure;
    view! {
        <PromptForm state max_chars=max_prompt_chars typed_prompt />
        <StatusRegion state first_error account />
        {move || {
            state
                .shown
                .get()
                .map(|image| {
                    let path = image_page_path(&image.id);
                    view! {
                        <ResultFigure
                            image
                            node_ref=result_figure
                            copy_link=view! { <CopyButton path /> }
                        />
                    }
                })
        }}
        <RecentImages recent=state.recent now=state.now keep=recent_images_kept />
    }
}
