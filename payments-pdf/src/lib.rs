#![doc = include_str!("../README.md")]

use std::sync::LazyLock;

use chrono::NaiveDate;
use krilla::Document;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::surface::Surface;
use krilla::text::{Font, TextDirection};
use payments_core::{
    Creditor, DebtPosition, Locale, Money, OptionKind, PaymentOption, TransactionSummary,
};
use qrcode::{EcLevel, QrCode, Version};

/// Why a document could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PdfError {
    /// The QR code's payload does not fit version 4 with error correction M.
    #[error("the QR code does not fit version 4-M: {0}")]
    Qr(String),
    /// The PDF writer failed.
    #[error("the PDF could not be written: {0}")]
    Write(String),
    /// There is nothing to print: a position without options.
    #[error("nothing to print: {0}")]
    Empty(&'static str),
}

static REGULAR: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("../fonts/DejaVuSans-Bold.ttf");

struct Face {
    font: Font,
    metrics: ttf_parser::Face<'static>,
}

static FACES: LazyLock<(Face, Face)> = LazyLock::new(|| {
    let face = |bytes: &'static [u8]| Face {
        font: Font::new(bytes.into(), 0).expect("the embedded font reads"),
        metrics: ttf_parser::Face::parse(bytes, 0).expect("the embedded font parses"),
    };
    (face(REGULAR), face(BOLD))
});

/// A4, in points.
const PAGE_W: f32 = 595.28;
const PAGE_H: f32 = 841.89;
const MARGIN: f32 = 36.0;
/// 25 mm, the QR code's printed size.
const QR_SIZE: f32 = 70.87;
/// pagoPA's blue, for section titles.
const BLUE: (u8, u8, u8) = (0x00, 0x66, 0xcc);
const GREY: (u8, u8, u8) = (0x5c, 0x6f, 0x82);

/// The pagoPA QR code payload of an option: `PAGOPA|002|<notice number>|<creditor's
/// fiscal code>|<amount in euro cents>` (notice specification, "Codice QR").
pub fn qr_payload(option: &PaymentOption, creditor_fiscal_code: &str) -> String {
    format!(
        "PAGOPA|002|{:0>18}|{:0>11}|{}",
        option.notice_number,
        creditor_fiscal_code.trim(),
        option.amount.minor_units()
    )
}

/// A notice number as printed: groups of four digits (`3020 0010 0440 0094 84`).
pub fn grouped_notice(notice: &str) -> String {
    notice
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// An amount as the notice prints it: `1.500,00` in Italian, `1,500.00` in English.
pub fn amount_text(amount: &Money, locale: Locale) -> String {
    let euro = amount.format(locale);
    euro.trim_start_matches('€').trim().to_owned()
}

fn date_text(d: NaiveDate) -> String {
    d.format("%d/%m/%Y").to_string()
}

/// The fixed texts of the notice in the two languages (notice specification, Allegato 1
/// "Traduzioni").
struct Texts {
    title: &'static str,
    creditor: &'static str,
    recipient: &'static str,
    how_much: &'static str,
    amount: &'static str,
    by: &'static str,
    may_change: &'static str,
    where_to_pay: &'static str,
    go_to: &'static str,
    app: &'static str,
    app_text: &'static str,
    site: &'static str,
    local: &'static str,
    local_text: &'static str,
    payment_data: &'static str,
    single: &'static str,
    scan_beside: &'static str,
    scan_above: &'static str,
    euro: &'static str,
    payee: &'static str,
    recipient_short: &'static str,
    subject: &'static str,
    cbill: &'static str,
    notice_code: &'static str,
    payee_cf: &'static str,
    instalment: &'static str,
    due_by: &'static str,
    page: &'static str,
}

const IT: Texts = Texts {
    title: "AVVISO DI PAGAMENTO",
    creditor: "ENTE CREDITORE",
    recipient: "DESTINATARIO",
    how_much: "QUANTO E QUANDO PAGARE?",
    amount: "Euro",
    by: "entro il",
    may_change: "In fase di pagamento, se previsto dall'ente, l'importo potrebbe essere aggiornato automaticamente e subire variazioni in diminuzione (per sgravi, note di credito) o in aumento (per sanzioni, interessi, ecc.).",
    where_to_pay: "DOVE PAGARE?",
    go_to: "Lista dei canali di pagamento su www.pagopa.gov.it",
    app: "PAGA CON L'APP IO",
    app_text: "oppure dal tuo Home Banking, con la tua app di pagamento o con gli altri canali abilitati.",
    site: "oppure sul sito dell'ente, dal tuo Home Banking, con la tua app di pagamento o con gli altri canali abilitati.",
    local: "PAGA SUL TERRITORIO",
    local_text: "presso Banche e Sportelli ATM, negli Uffici Postali e Punti Postali, nei Bar, Edicole, Ricevitorie, Supermercati, Tabaccherie e altri Esercenti Convenzionati.",
    payment_data: "DATI PER IL PAGAMENTO",
    single: "Rata unica",
    scan_beside: "Inquadra il codice QR con la tua app di pagamento o usa i dati accanto.",
    scan_above: "Inquadra il codice QR con la tua app di pagamento o usa i dati sopra.",
    euro: "Euro",
    payee: "Ente creditore",
    recipient_short: "Destinatario",
    subject: "Oggetto del pagamento",
    cbill: "Cod. CBILL",
    notice_code: "Cod. Avviso",
    payee_cf: "Cod. Fiscale Ente",
    instalment: "Rata",
    due_by: "Entro il",
    page: "Pagina",
};

const EN: Texts = Texts {
    title: "PAYMENT NOTICE",
    creditor: "PAYEE",
    recipient: "RECIPIENT",
    how_much: "HOW MUCH AND WHEN TO PAY?",
    amount: "Euro",
    by: "by",
    may_change: "When paying, if the payee allows it, the amount may be updated automatically, lower (for reliefs, credit notes) or higher (for penalties, interest, etc.).",
    where_to_pay: "WHERE TO PAY?",
    go_to: "List of payment channels at www.pagopa.gov.it",
    app: "PAY WITH THE IO APP",
    app_text: "or through your Home Banking, your payment app or the other enabled channels.",
    site: "or on the payee's website, through your Home Banking, your payment app or the other enabled channels.",
    local: "PAY LOCALLY",
    local_text: "at Banks and ATMs, Post Offices and Postal Points, Bars, Newsagents, Betting shops, Supermarkets, Tobacconists and other authorised Retailers.",
    payment_data: "PAYMENT DETAILS",
    single: "Full amount",
    scan_beside: "Scan the QR code with your payment app or use the details beside it.",
    scan_above: "Scan the QR code with your payment app or use the details above.",
    euro: "Euro",
    payee: "Payee",
    recipient_short: "Recipient",
    subject: "Payment subject",
    cbill: "CBILL code",
    notice_code: "Notice code",
    payee_cf: "Payee tax code",
    instalment: "Instalment",
    due_by: "By",
    page: "Page",
};

fn texts(locale: Locale) -> &'static Texts {
    match locale {
        Locale::En => &EN,
        _ => &IT,
    }
}

/// Drawing on one page with the embedded fonts.
struct Pen<'a, 'b> {
    s: &'a mut Surface<'b>,
}

impl Pen<'_, '_> {
    fn face(bold: bool) -> &'static Face {
        if bold { &FACES.1 } else { &FACES.0 }
    }

    /// The width of `text` at `size`, from the font's advances.
    fn width(text: &str, size: f32, bold: bool) -> f32 {
        let face = &Self::face(bold).metrics;
        let units = f32::from(face.units_per_em());
        text.chars()
            .map(|c| {
                face.glyph_index(c)
                    .and_then(|g| face.glyph_hor_advance(g))
                    .map_or(units / 2.0, f32::from)
            })
            .sum::<f32>()
            * size
            / units
    }

    fn color(&mut self, (r, g, b): (u8, u8, u8)) {
        self.s.set_fill(Some(Fill {
            paint: rgb::Color::new(r, g, b).into(),
            ..Fill::default()
        }));
    }

    fn text(&mut self, x: f32, y: f32, size: f32, bold: bool, text: &str) {
        if text.is_empty() {
            return;
        }
        self.s.draw_text(
            Point::from_xy(x, y),
            Self::face(bold).font.clone(),
            size,
            text,
            false,
            TextDirection::Auto,
        );
    }

    fn text_right(&mut self, right: f32, y: f32, size: f32, bold: bool, text: &str) {
        let w = Self::width(text, size, bold);
        self.text(right - w, y, size, bold, text);
    }

    /// Writes `text` wrapped to `width` from baseline `y`; answers the baseline after it.
    fn wrap(&mut self, x: f32, y: f32, width: f32, size: f32, bold: bool, text: &str) -> f32 {
        let mut y = y;
        for line in wrap_lines(text, width, size, bold) {
            self.text(x, y, size, bold, &line);
            y += size * 1.3;
        }
        y
    }

    fn line(&mut self, x1: f32, y1: f32, x2: f32, y2: f32) {
        let mut pb = PathBuilder::new();
        pb.move_to(x1, y1);
        pb.line_to(x2, y2);
        if let Some(path) = pb.finish() {
            self.s.set_fill(None);
            self.s.set_stroke(Some(Stroke {
                paint: rgb::Color::new(GREY.0, GREY.1, GREY.2).into(),
                width: 0.5,
                ..Stroke::default()
            }));
            self.s.draw_path(&path);
            self.s.set_stroke(None);
            self.color((0, 0, 0));
        }
    }

    /// The QR code of `payload` at version 4 with error correction M, `QR_SIZE` wide.
    fn qr(&mut self, x: f32, y: f32, payload: &str) -> Result<(), PdfError> {
        let code = QrCode::with_version(payload.as_bytes(), Version::Normal(4), EcLevel::M)
            .map_err(|e| PdfError::Qr(e.to_string()))?;
        let n = code.width();
        let module = QR_SIZE / n as f32;
        let colors = code.to_colors();
        self.color((0, 0, 0));
        let mut pb = PathBuilder::new();
        for (i, c) in colors.iter().enumerate() {
            if *c == qrcode::Color::Dark {
                let (cx, cy) = ((i % n) as f32, (i / n) as f32);
                if let Some(r) = Rect::from_xywh(x + cx * module, y + cy * module, module, module) {
                    pb.push_rect(r);
                }
            }
        }
        if let Some(path) = pb.finish() {
            self.s.draw_path(&path);
        }
        Ok(())
    }
}

/// `text` cut in lines no wider than `width`, at spaces (a word wider than the line is
/// cut where it must).
fn wrap_lines(text: &str, width: f32, size: f32, bold: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let candidate = if line.is_empty() {
            word.to_owned()
        } else {
            format!("{line} {word}")
        };
        if Pen::width(&candidate, size, bold) <= width || line.is_empty() {
            line = candidate;
        } else {
            lines.push(std::mem::take(&mut line));
            line = word.to_owned();
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

fn cut(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// The header every page repeats: title, subject, creditor's name.
fn header(pen: &mut Pen<'_, '_>, t: &Texts, creditor: &Creditor, p: &DebtPosition) {
    pen.color(BLUE);
    pen.text(MARGIN, 52.0, 18.0, true, t.title);
    pen.color((0, 0, 0));
    pen.wrap(MARGIN, 72.0, 330.0, 11.0, true, &cut(&p.reason, 90));
    pen.wrap(
        380.0,
        52.0,
        PAGE_W - MARGIN - 380.0,
        10.0,
        true,
        &cut(&creditor.name, 100),
    );
}

/// Writes the pagoPA payment notice of `position` in `locale`.
///
/// The first page has the header, the creditor (`ENTE CREDITORE`, with the sector,
/// contacts and CBILL code of [`Creditor::notice`](payments_core::Creditor::notice)) and
/// the recipient (`DESTINATARIO`), how much and by when, where to pay, and the payment
/// data of the single option with its QR code; the instalments follow, three side by side,
/// each with its own QR code. Options already paid or no longer payable are printed all
/// the same: a notice shows the position as issued.
pub fn notice_pdf(
    creditor: &Creditor,
    position: &DebtPosition,
    locale: Locale,
) -> Result<Vec<u8>, PdfError> {
    if position.options.is_empty() {
        return Err(PdfError::Empty("a debt position without payment options"));
    }
    let t = texts(locale);
    let mut doc = Document::new();
    let single = position
        .options
        .iter()
        .find(|o| o.kind == OptionKind::Single);
    let instalments: Vec<&PaymentOption> = position
        .options
        .iter()
        .filter(|o| o.kind.is_instalment())
        .collect();
    let bands: Vec<&[&PaymentOption]> = instalments.chunks(3).collect();
    // Page 1: the single option (or the first band when there is none); then two bands a
    // page.
    let mut pages: Vec<Vec<&[&PaymentOption]>> = Vec::new();
    let mut rest = bands.as_slice();
    let take = 1.min(rest.len());
    pages.push(rest[..take].to_vec());
    rest = &rest[take..];
    while !rest.is_empty() {
        let take = 2.min(rest.len());
        pages.push(rest[..take].to_vec());
        rest = &rest[take..];
    }
    let total_pages = pages.len();
    for (n, page_bands) in pages.iter().enumerate() {
        let mut page = doc.start_page_with(
            PageSettings::from_wh(PAGE_W, PAGE_H).ok_or(PdfError::Write("page size".into()))?,
        );
        let mut surface = page.surface();
        let mut pen = Pen { s: &mut surface };
        header(&mut pen, t, creditor, position);
        let mut y = 110.0;
        if n == 0 {
            y = first_page(
                &mut pen,
                t,
                creditor,
                position,
                single,
                instalments.len(),
                locale,
            )?;
        }
        for band in page_bands {
            y = instalment_band(&mut pen, t, creditor, band, y, locale)?;
        }
        pen.color(GREY);
        pen.text_right(
            PAGE_W - MARGIN,
            PAGE_H - 24.0,
            7.0,
            false,
            &format!("{} {}/{}", t.page, n + 1, total_pages),
        );
        surface.finish();
        page.finish();
    }
    doc.finish().map_err(|e| PdfError::Write(format!("{e:?}")))
}

/// The first page's blocks; answers where the next block starts.
fn first_page(
    pen: &mut Pen<'_, '_>,
    t: &Texts,
    creditor: &Creditor,
    p: &DebtPosition,
    single: Option<&PaymentOption>,
    instalments: usize,
    locale: Locale,
) -> Result<f32, PdfError> {
    let col = (PAGE_W - 2.0 * MARGIN) / 2.0;
    let left = MARGIN;
    let right = MARGIN + col + 12.0;
    let top = 120.0;
    // Creditor.
    pen.color(GREY);
    pen.text(
        left,
        top,
        8.0,
        true,
        &format!("{} {}", t.creditor, creditor.fiscal_code),
    );
    pen.color((0, 0, 0));
    let mut y = pen.wrap(
        left,
        top + 14.0,
        col - 12.0,
        11.0,
        true,
        &cut(&creditor.name, 100),
    );
    if let Some(sector) = &creditor.notice.sector {
        y = pen.wrap(left, y, col - 12.0, 9.0, false, &cut(sector, 100));
    }
    if let Some(info) = &creditor.notice.info {
        y = pen.wrap(left, y, col - 12.0, 8.0, false, &cut(info, 140));
    }
    // Recipient.
    pen.color(GREY);
    pen.text(
        right,
        top,
        8.0,
        true,
        &format!("{} {}", t.recipient, p.payer.fiscal_code),
    );
    pen.color((0, 0, 0));
    let mut y2 = pen.wrap(
        right,
        top + 14.0,
        col - 12.0,
        11.0,
        true,
        &cut(&p.payer.name, 70),
    );
    if let Some(address) = &p.payer.address {
        y2 = pen.wrap(right, y2, col - 12.0, 9.0, false, &cut(address, 140));
    }
    let mut y = y.max(y2) + 14.0;
    pen.line(MARGIN, y - 8.0, PAGE_W - MARGIN, y - 8.0);

    // How much and when.
    let lead = single
        .or_else(|| p.options.first())
        .ok_or(PdfError::Empty("no option"))?;
    pen.color(BLUE);
    pen.text(left, y + 6.0, 10.0, true, t.how_much);
    pen.color((0, 0, 0));
    let total = match single {
        Some(s) => s.amount,
        None => Money::sum(lead.amount.currency(), p.options.iter().map(|o| &o.amount))
            .unwrap_or(lead.amount),
    };
    pen.text(
        left,
        y + 26.0,
        16.0,
        true,
        &format!("{} {}", amount_text(&total, locale), t.amount),
    );
    pen.text(
        left,
        y + 42.0,
        10.0,
        false,
        &format!("{} {}", t.by, date_text(lead.due_date)),
    );
    let mut yl = y + 58.0;
    if instalments >= 2 {
        let plan = match (single.is_some(), locale) {
            (true, Locale::En) => format!("You can pay in full or in {instalments} instalments"),
            (false, Locale::En) => format!("You can pay in {instalments} instalments"),
            (true, _) => format!("Puoi pagare per intero oppure in {instalments} rate"),
            (false, _) => format!("Puoi pagare in {instalments} rate"),
        };
        yl = pen.wrap(left, yl, col - 12.0, 9.0, true, &plan);
    }
    yl = pen.wrap(left, yl + 2.0, col - 12.0, 7.0, false, t.may_change);
    // Where to pay.
    pen.color(BLUE);
    pen.text(right, y + 6.0, 10.0, true, t.where_to_pay);
    pen.color((0, 0, 0));
    let mut yr = pen.wrap(right, y + 20.0, col - 12.0, 7.5, false, t.go_to);
    yr = pen.wrap(right, yr + 2.0, col - 12.0, 8.5, true, t.app);
    let online = if creditor.notice.pays_online {
        t.site
    } else {
        t.app_text
    };
    yr = pen.wrap(right, yr, col - 12.0, 7.5, false, online);
    yr = pen.wrap(right, yr + 2.0, col - 12.0, 8.5, true, t.local);
    yr = pen.wrap(right, yr, col - 12.0, 7.5, false, t.local_text);
    y = yl.max(yr) + 10.0;
    pen.line(MARGIN, y, PAGE_W - MARGIN, y);
    y += 18.0;

    // Payment data of the single option.
    pen.color(BLUE);
    pen.text(left, y, 10.0, true, t.payment_data);
    pen.color((0, 0, 0));
    y += 16.0;
    if let Some(s) = single {
        pen.text(
            left,
            y,
            9.0,
            true,
            &format!("{} {} {}", t.single, t.by, date_text(s.due_date)),
        );
        y += 10.0;
        pen.qr(left, y, &qr_payload(s, &creditor.fiscal_code))?;
        let x = left + QR_SIZE + 16.0;
        let w = PAGE_W - MARGIN - x;
        let mut yy = y + 8.0;
        let rows = [
            (t.recipient_short, cut(&p.payer.name, 70)),
            (t.payee, cut(&creditor.name, 100)),
            (t.subject, cut(&s.description, 140)),
        ];
        for (label, value) in rows {
            pen.color(GREY);
            pen.text(x, yy, 7.0, false, label);
            pen.color((0, 0, 0));
            yy = pen.wrap(x + 95.0, yy, w - 95.0 - 110.0, 8.0, true, &value);
        }
        pen.text_right(
            PAGE_W - MARGIN,
            y + 8.0,
            12.0,
            true,
            &format!("{} {}", t.euro, amount_text(&s.amount, locale)),
        );
        let codes = codes(creditor, s);
        let mut yc = yy + 4.0;
        for (label, value) in codes {
            pen.color(GREY);
            pen.text(x, yc, 7.0, false, label(t));
            pen.color((0, 0, 0));
            pen.text(x + 95.0, yc, 9.0, true, &value);
            yc += 12.0;
        }
        let below = (y + QR_SIZE + 10.0).max(yc);
        pen.color(GREY);
        pen.wrap(
            left,
            below,
            PAGE_W - 2.0 * MARGIN,
            7.0,
            false,
            t.scan_beside,
        );
        pen.color((0, 0, 0));
        y = below + 20.0;
        pen.line(MARGIN, y - 6.0, PAGE_W - MARGIN, y - 6.0);
        y += 8.0;
    }
    Ok(y)
}

/// The codes printed beside every QR code: CBILL (when the body has one), notice code,
/// the body's fiscal code.
type Label = fn(&Texts) -> &'static str;

fn codes(creditor: &Creditor, o: &PaymentOption) -> Vec<(Label, String)> {
    let mut out: Vec<(Label, String)> = Vec::new();
    if let Some(cbill) = &creditor.notice.cbill {
        out.push((|t| t.cbill, cbill.clone()));
    }
    out.push((|t| t.notice_code, grouped_notice(&o.notice_number)));
    out.push((|t| t.payee_cf, creditor.fiscal_code.clone()));
    out
}

/// Up to three instalments side by side from `y`; answers where the next band starts.
fn instalment_band(
    pen: &mut Pen<'_, '_>,
    t: &Texts,
    creditor: &Creditor,
    band: &[&PaymentOption],
    y: f32,
    locale: Locale,
) -> Result<f32, PdfError> {
    let width = (PAGE_W - 2.0 * MARGIN) / 3.0;
    let mut bottom = y;
    for (i, o) in band.iter().enumerate() {
        let x = MARGIN + width * i as f32;
        let w = width - 12.0;
        let number = match o.kind {
            OptionKind::Instalment { number, .. } => number,
            _ => 0,
        };
        let title = match locale {
            Locale::En => format!("{} #{number}", t.instalment),
            _ => format!("{} {number}", t.instalment),
        };
        pen.color(BLUE);
        pen.text(x, y, 10.0, true, &title);
        pen.color((0, 0, 0));
        pen.text(
            x,
            y + 16.0,
            12.0,
            true,
            &format!("{} {}", t.euro, amount_text(&o.amount, locale)),
        );
        pen.text(
            x,
            y + 30.0,
            9.0,
            false,
            &format!("{} {}", t.due_by, date_text(o.due_date)),
        );
        let mut yy = y + 46.0;
        for (label, value) in codes(creditor, o) {
            pen.color(GREY);
            pen.text(x, yy, 6.5, false, label(t));
            pen.color((0, 0, 0));
            pen.text(x, yy + 9.0, 8.5, true, &value);
            yy += 20.0;
        }
        for (label, value) in [
            (t.subject, cut(&o.description, 140)),
            (t.payee, cut(&creditor.name, 100)),
        ] {
            pen.color(GREY);
            pen.text(x, yy, 6.5, false, label);
            pen.color((0, 0, 0));
            yy = pen.wrap(x, yy + 9.0, w, 7.5, false, &value) + 2.0;
        }
        pen.qr(x, yy + 2.0, &qr_payload(o, &creditor.fiscal_code))?;
        yy += QR_SIZE + 14.0;
        pen.color(GREY);
        yy = pen.wrap(x, yy, w, 6.0, false, t.scan_above);
        pen.color((0, 0, 0));
        bottom = bottom.max(yy);
    }
    pen.line(MARGIN, bottom + 4.0, PAGE_W - MARGIN, bottom + 4.0);
    Ok(bottom + 22.0)
}

/// Writes the notice of each of `positions` and hands it to `write` as soon as it is
/// ready, for a mass mailing: one notice in memory at a time. Answers how many were
/// written; stops at the first error of `write`.
pub fn write_notices<I, W>(creditor: &Creditor, positions: I, mut write: W) -> Result<u64, PdfError>
where
    I: IntoIterator<Item = DebtPosition>,
    W: FnMut(&DebtPosition, &[u8]) -> std::io::Result<()>,
{
    let mut n = 0;
    for p in positions {
        let pdf = notice_pdf(creditor, &p, p.payer.locale)?;
        write(&p, &pdf).map_err(|e| PdfError::Write(e.to_string()))?;
        n += 1;
    }
    Ok(n)
}

/// The texts of a receipt.
struct ReceiptTexts {
    title: &'static str,
    body: &'static str,
    payer: &'static str,
    id: &'static str,
    provider: &'static str,
    method: &'static str,
    date: &'static str,
    items: &'static str,
    reference: &'static str,
    amount: &'static str,
    total: &'static str,
    status: &'static str,
    paid: &'static str,
    refunded: &'static str,
    note: &'static str,
}

const RECEIPT_IT: ReceiptTexts = ReceiptTexts {
    title: "RICEVUTA DI PAGAMENTO",
    body: "Ente",
    payer: "Pagatore",
    id: "Identificativo del pagamento",
    provider: "Riferimento del gestore",
    method: "Modalità",
    date: "Data e ora",
    items: "Voci pagate",
    reference: "Riferimento",
    amount: "Importo",
    total: "Totale",
    status: "Esito",
    paid: "Pagato",
    refunded: "Rimborsato",
    note: "Ora italiana (Europe/Rome). Conservare questa ricevuta come prova del pagamento.",
};

const RECEIPT_EN: ReceiptTexts = ReceiptTexts {
    title: "PAYMENT RECEIPT",
    body: "Public body",
    payer: "Payer",
    id: "Payment identifier",
    provider: "Provider reference",
    method: "Method",
    date: "Date and time",
    items: "Items paid",
    reference: "Reference",
    amount: "Amount",
    total: "Total",
    status: "Outcome",
    paid: "Paid",
    refunded: "Refunded",
    note: "Italian time (Europe/Rome). Keep this receipt as proof of payment.",
};

/// Writes the receipt of a paid transaction (or of the lines of it a summary tells) in
/// `locale`: the body, the payer, the payment identifier and the provider's reference,
/// the method, the date and time in Europe/Rome, each item with its reference (its
/// pagoPA notice number when it has one) and amount, and the total.
pub fn receipt_pdf(summary: &TransactionSummary, locale: Locale) -> Result<Vec<u8>, PdfError> {
    let t = match locale {
        Locale::En => &RECEIPT_EN,
        _ => &RECEIPT_IT,
    };
    let mut doc = Document::new();
    let mut lines = summary.lines.iter().enumerate().peekable();
    let mut page_no = 0;
    while page_no == 0 || lines.peek().is_some() {
        page_no += 1;
        let mut page = doc.start_page_with(
            PageSettings::from_wh(PAGE_W, PAGE_H).ok_or(PdfError::Write("page size".into()))?,
        );
        let mut surface = page.surface();
        let mut pen = Pen { s: &mut surface };
        pen.color(BLUE);
        pen.text(MARGIN, 56.0, 18.0, true, t.title);
        pen.color((0, 0, 0));
        let mut y = 86.0;
        if page_no == 1 {
            let when = summary
                .paid_at
                .with_timezone(&chrono_tz::Europe::Rome)
                .format("%d/%m/%Y %H:%M:%S")
                .to_string();
            let status = if summary.status == payments_core::TxStatus::Refunded {
                t.refunded
            } else {
                t.paid
            };
            let payer = match &summary.payer_fiscal_code {
                Some(cf) => format!("{} ({cf})", summary.payer_name),
                None => summary.payer_name.clone(),
            };
            let rows = [
                (
                    t.body,
                    format!(
                        "{} ({})",
                        summary.creditor_name, summary.creditor_fiscal_code
                    ),
                ),
                (t.payer, payer),
                (t.id, summary.transaction_id.to_string()),
                (
                    t.provider,
                    summary.provider_ref.clone().unwrap_or_else(|| "-".into()),
                ),
                (t.method, summary.method_kind.label(locale).to_owned()),
                (t.date, when),
                (t.status, status.to_owned()),
            ];
            for (label, value) in rows {
                pen.color(GREY);
                pen.text(MARGIN, y, 8.0, false, label);
                pen.color((0, 0, 0));
                y = pen.wrap(
                    MARGIN + 150.0,
                    y,
                    PAGE_W - 2.0 * MARGIN - 150.0,
                    10.0,
                    true,
                    &value,
                ) + 4.0;
            }
            y += 10.0;
        }
        pen.color(BLUE);
        pen.text(MARGIN, y, 10.0, true, t.items);
        y += 16.0;
        pen.color(GREY);
        pen.text(MARGIN, y, 8.0, true, t.reference);
        pen.text(MARGIN + 150.0, y, 8.0, true, "");
        pen.text_right(PAGE_W - MARGIN, y, 8.0, true, t.amount);
        pen.color((0, 0, 0));
        pen.line(MARGIN, y + 4.0, PAGE_W - MARGIN, y + 4.0);
        y += 18.0;
        while let Some((i, line)) = lines.peek().copied() {
            if y > PAGE_H - 120.0 {
                break;
            }
            lines.next();
            let reference = summary
                .references
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("{}/{}", line.source.module, line.source.key));
            let reference =
                if reference.len() == 18 && reference.bytes().all(|b| b.is_ascii_digit()) {
                    grouped_notice(&reference)
                } else {
                    reference
                };
            pen.text(MARGIN, y, 8.5, false, &cut(&reference, 40));
            let end = pen.wrap(
                MARGIN + 150.0,
                y,
                PAGE_W - 2.0 * MARGIN - 150.0 - 90.0,
                9.0,
                false,
                &line.reason,
            );
            pen.text_right(PAGE_W - MARGIN, y, 9.5, true, &line.amount.format(locale));
            y = end + 6.0;
        }
        if lines.peek().is_none() {
            pen.line(MARGIN, y - 4.0, PAGE_W - MARGIN, y - 4.0);
            pen.text(MARGIN, y + 10.0, 11.0, true, t.total);
            pen.text_right(
                PAGE_W - MARGIN,
                y + 10.0,
                11.0,
                true,
                &summary.total.format(locale),
            );
            pen.color(GREY);
            pen.wrap(MARGIN, y + 34.0, PAGE_W - 2.0 * MARGIN, 7.5, false, t.note);
        }
        surface.finish();
        page.finish();
    }
    doc.finish().map_err(|e| PdfError::Write(format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_codes_and_amounts_print_as_the_specification_shows() {
        // Notice specification, "Dati per il pagamento": the code in groups of four.
        assert_eq!(
            grouped_notice("470000008800999051"),
            "4700 0000 8800 9990 51"
        );
        let m = Money::parse_eur("1500").unwrap();
        assert_eq!(amount_text(&m, Locale::It), "1.500,00");
        assert_eq!(amount_text(&m, Locale::En), "1,500.00");
    }

    #[test]
    fn long_texts_wrap_within_their_width() {
        let lines = wrap_lines(IT.local_text, 200.0, 8.0, false);
        assert!(lines.len() > 1);
        for l in &lines {
            assert!(Pen::width(l, 8.0, false) <= 200.0, "{l}");
        }
        assert_eq!(lines.join(" "), IT.local_text);
    }
}
