from __future__ import annotations

# Every error a user can meet: code -> (HTTP status, French, English). Messages say what went
# wrong and what to do; {placeholders} are filled from RuleViolation's params.
MESSAGES: dict[str, tuple[int, str, str]] = {
    "unknown_board": (
        404,
        "Aucun atelier ne porte le code « {code} ». Vérifiez le code affiché au tableau.",
        "No board has the code '{code}'. Check the code shown on the screen.",
    ),
    "unknown_column": (
        422,
        "Cette colonne n'existe pas dans ce tableau.",
        "That column does not exist on this board.",
    ),
    "unknown_card": (404, "Cette carte n'existe pas dans ce tableau.",
                     "That card does not exist on this board."),
    "unknown_template": (
        422,
        "Modèle inconnu « {template} ».",
        "Unknown template '{template}'.",
    ),
    "empty_text": (422, "La carte est vide : écrivez quelques mots.",
                   "The card is empty: write a few words."),
    "text_too_long": (
        422,
        "La carte fait {length} caractères ; {limit} au maximum.",
        "The card is {length} characters long; {limit} at most.",
    ),
    "title_required": (422, "Donnez un titre à l'atelier.", "Give the atelier a title."),
    "field_too_long": (
        422,
        "Le champ « {field} » fait {length} caractères ; {limit} au maximum.",
        "The field '{field}' is {length} characters long; {limit} at most.",
    ),
    "bad_columns": (
        422,
        "Il faut entre 1 et {limit} colonnes, chacune avec un titre.",
        "A board needs between 1 and {limit} columns, each with a title.",
    ),
    "bad_phase": (422, "Phase inconnue « {phase} ».", "Unknown phase '{phase}'."),
    "board_closed": (
        409,
        "Les contributions sont fermées pour le moment (phase : {phase}).",
        "Posting is closed for now (phase: {phase}).",
    ),
    "board_locked": (
        409,
        "L'animation a suspendu les contributions pour le moment.",
        "The animator has paused posting for now.",
    ),
    "bad_budget": (
        422,
        "Le nombre de points par personne doit être entre 1 et {limit}.",
        "The number of dots per person must be between 1 and {limit}.",
    ),
    "not_voting": (
        409,
        "Le vote n'est pas ouvert (phase : {phase}).",
        "Voting is not open (phase: {phase}).",
    ),
    "vote_budget_spent": (
        409,
        "Vous avez déjà utilisé vos {budget} points. Retirez-en un pour voter ailleurs.",
        "You have already used your {budget} dots. Take one back to vote elsewhere.",
    ),
    "vote_item_limit": (
        409,
        "Au plus {limit} point(s) par carte ou thème.",
        "At most {limit} dot(s) per card or theme.",
    ),
    "no_vote_to_remove": (
        409,
        "Vous n'avez pas de point sur cet élément.",
        "You have no dot on this item.",
    ),
    "unknown_theme": (404, "Ce thème n'existe pas dans ce tableau.",
                      "That theme does not exist on this board."),
    "card_unavailable": (
        409,
        "Cette carte n'est plus disponible (masquée, supprimée ou fusionnée).",
        "This card is no longer available (hidden, deleted or merged).",
    ),
    "merge_into_self": (422, "Une carte ne peut pas être fusionnée avec elle-même.",
                        "A card cannot be merged into itself."),
    "results_hidden": (
        403,
        "Les résultats ne sont pas encore affichés par l'animation.",
        "The animator has not shown the results yet.",
    ),
    "unknown_event": (
        404,
        "Aucun événement ne porte le code « {code} ».",
        "No event has the code '{code}'.",
    ),
    "organiser_only": (403, "Seule l'organisation de l'événement peut faire cela.",
                       "Only the event's organiser can do that."),
    "board_frozen": (
        409,
        "Cet atelier est terminé : sa synthèse est figée, il n'accepte plus de contributions, "
        "de votes ni de changements. L'animation peut le rouvrir.",
        "This atelier is over: its synthesis is frozen, so it takes no more cards, votes or "
        "changes. The animator can reopen it.",
    ),
    "confirm_mismatch": (
        422,
        "Le code tapé ne correspond pas : rien n'a été supprimé. Tapez {code} pour confirmer.",
        "The code typed does not match: nothing was deleted. Type {code} to confirm.",
    ),
    "not_frozen": (
        409,
        "Cet atelier n'est pas figé : il n'y a rien à rouvrir.",
        "This atelier is not frozen: there is nothing to reopen.",
    ),
    "unknown_synthesis": (
        404,
        "Cette synthèse n'existe pas (ou plus). Vérifiez le lien.",
        "This synthesis does not exist (any more). Check the link.",
    ),
    "bad_import": (
        422,
        "Ce fichier n'est pas une synthèse Atelier board intacte ({reason}) : exportez-la de "
        "nouveau au format JSON, sans la modifier.",
        "This file is not an intact Atelier board synthesis ({reason}): export it again as "
        "JSON, without editing it.",
    ),
    "pdf_unavailable": (
        404,
        "L'export PDF n'est pas installé sur ce serveur : ouvrez la version HTML et "
        "choisissez « Imprimer → Enregistrer en PDF ».",
        "PDF export is not installed on this server: open the HTML version and choose "
        "'Print → Save as PDF'.",
    ),
    "invalid_json": (
        400,
        "Le corps de la requête n'est pas du JSON valide.",
        "The request body is not valid JSON.",
    ),
    "invalid_field": (
        422,
        "Le champ « {field} » est absent ou mal formé.",
        "The field '{field}' is missing or malformed.",
    ),
    "auth_required": (
        401,
        "Identifiez-vous : rejoignez l'atelier ou utilisez le lien d'animation.",
        "Authentication required: join the board or use the animator link.",
    ),
    "invalid_token": (
        401,
        "Ce jeton n'est pas valable pour cet atelier.",
        "This token is not valid for this board.",
    ),
    "animator_only": (
        403,
        "Seule l'animation de l'atelier peut faire cela.",
        "Only the board's animator can do that.",
    ),
    "origin_not_allowed": (
        403,
        "Requête refusée : elle vient d'un autre site ({origin}).",
        "Request refused: it comes from another site ({origin}).",
    ),
    "body_too_large": (
        413,
        "La requête est trop grosse ({limit} octets au maximum).",
        "The request is too large ({limit} bytes at most).",
    ),
    "too_many": (
        429,
        "Trop de requêtes d'un coup ({limit_fr}) : patientez quelques secondes, rien n'est "
        "perdu.",
        "Too many requests at once ({limit_en}): wait a few seconds, nothing is lost.",
    ),
    "too_many_connections": (
        429,
        "Trop de connexions ouvertes depuis cette adresse ({limit} au maximum).",
        "Too many connections open from this address ({limit} at most).",
    ),
    "bad_request": (400, "Requête mal formée.", "Malformed request."),
    "not_found": (404, "Cette page n'existe pas.", "This page does not exist."),
    "method_not_allowed": (405, "Méthode non permise ici.", "Method not allowed here."),
    "unavailable": (
        503,
        "Le serveur est occupé ; réessayez dans un instant. Rien n'a été perdu.",
        "The server is busy; try again in a moment. Nothing was lost.",
    ),
    "internal_error": (
        500,
        "Erreur inattendue du serveur ; réessayez. L'incident est consigné.",
        "Unexpected server error; try again. The incident is logged.",
    ),
}


class RuleViolation(Exception):
    """A request that breaks a board rule; carries a stable code for clients."""

    def __init__(self, code: str, /, **params: object) -> None:
        if code not in MESSAGES:
            raise KeyError(f"no message for error code {code!r}")
        self.code = code
        self.params = params
        super().__init__(f"{code}: {self.message('en')}")

    @property
    def status(self) -> int:
        return MESSAGES[self.code][0]

    def message(self, lang: str) -> str:
        _, fr, en = MESSAGES[self.code]
        return (en if lang == "en" else fr).format(**self.params)

    def to_dict(self) -> dict[str, object]:
        fr, en = self.message("fr"), self.message("en")
        return {"code": self.code, "message": f"{fr} / {en}", "fr": fr, "en": en}
