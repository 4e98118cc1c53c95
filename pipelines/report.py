"""Stage: the model review report of the latest scoring (champion against challenger), logged to MLflow."""

from crmscore.report import report_stage
from pipelines._common import main


def _arguments(parser):
    parser.add_argument(
        "--compare",
        nargs=2,
        default=["champion", "challenger"],
        metavar=("A", "B"),
        help="two aliases or version numbers to compare (default: champion challenger)",
    )


def _report(settings, args):
    result = report_stage(settings, compare=tuple(args.compare))
    print(result.path)
    return result


if __name__ == "__main__":
    main(__doc__, _report, add_arguments=_arguments)
