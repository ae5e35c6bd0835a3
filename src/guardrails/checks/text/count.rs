//! sentenceCount, wordCount and characterCount: counting as Portkey's plugins count, the
//! verdicts and their data, and the running counts of a growing stream.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    Sentences,
    Words,
    Characters,
}

/// A count range (`min*`/`max*` with the manifest's defaults).
#[derive(Debug)]
pub(crate) struct Count {
    pub min: i64,
    pub max: i64,
    pub not: bool,
    keys: (&'static str, &'static str),
}

impl Count {
    pub(crate) fn read(
        q: &mut Params<'_>,
        min: (&'static str, i64),
        max: (&'static str, i64),
    ) -> Count {
        Count {
            min: q.int(min.0, min.1),
            max: q.int(max.0, max.1),
            not: q.not(),
            keys: (min.0, max.0),
        }
    }

    pub(super) fn count(text: &str, unit: Unit) -> i64 {
        let n = match unit {
            // Portkey: `text.split(/[.!?]/).length - 1`, i.e. the number of terminators.
            // (The terminators are ASCII, and no byte of a multi-byte character is.)
            Unit::Sentences => text
                .bytes()
                .filter(|b| matches!(b, b'.' | b'!' | b'?'))
                .count(),
            // `text.trim().split(/\s+/).length`.
            Unit::Words => text.split_whitespace().count(),
            // JavaScript's `length`: UTF-16 code units (one per byte in ASCII text).
            Unit::Characters if text.is_ascii() => text.len(),
            Unit::Characters => text.encode_utf16().count(),
        };
        i64::try_from(n).unwrap_or(i64::MAX)
    }

    pub(crate) fn run(&self, ctx: &Ctx<'_>, unit: Unit) -> CheckOutcome {
        let raw = ctx.text();
        let text = if unit == Unit::Words { raw.trim() } else { raw };
        // Portkey's sentenceCount takes an empty text as 0 sentences; the others refuse it.
        if text.is_empty() && unit != Unit::Sentences {
            return no_text("analyze");
        }
        let n = Count::count(text, unit);
        let in_range = n >= self.min && n <= self.max;
        let verdict = invert(in_range, self.not);
        let (min, max) = (self.min, self.max);
        let name = match unit {
            Unit::Sentences => "sentence count",
            Unit::Words => "word count",
            Unit::Characters => "character count",
        };
        let relation = match (verdict, self.not) {
            (true, true) => ") is outside the specified range as expected of ",
            (true, false) => ") is within the specified range of ",
            (false, true) => ") is within the specified range when it should not be of ",
            (false, false) => ") is outside the specified range of ",
        };
        let (mut b1, mut b2, mut b3) = (
            itoa::Buffer::new(),
            itoa::Buffer::new(),
            itoa::Buffer::new(),
        );
        let explanation = [
            "The ",
            name,
            " (",
            b1.format(n),
            relation,
            b2.format(min),
            " to ",
            b3.format(max),
            ".",
        ];
        // The members in their sorted order: the count's key sorts differently per unit.
        let mut data = Obj::new();
        if unit == Unit::Characters {
            data = data.int("characterCount", n);
        }
        data = data
            .plain("explanation", &explanation)
            .int(self.keys.1, max)
            .int(self.keys.0, min)
            .bool("not", self.not);
        if unit == Unit::Sentences {
            data = data.int("sentenceCount", n);
        }
        data = ctx.excerpt(data, text).bool("verdict", verdict);
        if unit == Unit::Words {
            data = data.int("wordCount", n);
        }
        CheckOutcome::pass(verdict, data.done())
    }

    /// Mid-stream: fails only when the count is already over the maximum (it only grows).
    /// `counted` is the whole text's count kept by the stream (the text given is then only
    /// its newest window).
    pub(crate) fn over_max(
        &self,
        text: &str,
        counted: Option<&Counted>,
        check: &Check,
    ) -> Option<CheckOutcome> {
        let unit = match check {
            Check::SentenceCount(_) => Unit::Sentences,
            Check::WordCount(_) => Unit::Words,
            _ => Unit::Characters,
        };
        let n = match counted {
            Some(c) => c.get(unit),
            None => Count::count(text, unit),
        };
        (n > self.max).then(|| {
            let (mut b1, mut b2) = (itoa::Buffer::new(), itoa::Buffer::new());
            CheckOutcome::pass(
                false,
                Obj::new()
                    .int("count", n)
                    .text(
                        "explanation",
                        &[
                            "The streamed text passed the maximum of ",
                            b1.format(self.max),
                            " (",
                            b2.format(n),
                            ").",
                        ],
                    )
                    .int("max", self.max)
                    .bool("not", self.not)
                    .bool("verdict", false)
                    .done(),
            )
        })
    }
}

/// Sentence, word and character counts of a text that grows by appending, kept without
/// reading it again (each count adds up over pieces; words joined across a piece boundary are
/// counted once).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counted {
    sentences: i64,
    words: i64,
    characters: i64,
    /// The text so far ends inside a word.
    in_word: bool,
}

impl Counted {
    pub(crate) fn add(&mut self, piece: &str) {
        if piece.is_empty() {
            return;
        }
        self.sentences += Count::count(piece, Unit::Sentences);
        self.characters += Count::count(piece, Unit::Characters);
        let words = Count::count(piece, Unit::Words);
        let starts_in_word = piece.chars().next().is_some_and(|c| !c.is_whitespace());
        self.words += words - i64::from(self.in_word && starts_in_word);
        self.in_word = piece
            .chars()
            .next_back()
            .is_some_and(|c| !c.is_whitespace());
    }

    pub(crate) fn get(&self, unit: Unit) -> i64 {
        match unit {
            Unit::Sentences => self.sentences,
            Unit::Words => self.words,
            Unit::Characters => self.characters,
        }
    }
}
